"""POST /admin/reload and /admin/rollback through the Falcon app, on a real state dir
with the real LocalSource reading a joblib file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.reloading.sources.local import content_hash
from inferd.store.slots import SlotStore
from tests.fakes import ExplodingModel, write_model
from tests.support import app_client

ROWS = {"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
TOKEN = "s3cr3t-admin-token-0123456789"


def client_for(settings: Settings, **reloader_options: Any) -> testing.TestClient:
    return app_client(settings, runner=open_reloader(settings, **reloader_options))


def version_of(path: Path) -> str:
    return content_hash(path)[:12]


def predict(client: testing.TestClient) -> testing.Result:
    return client.simulate_post("/predict/", json=ROWS)


@pytest.fixture
def model_a(model_path: Path, forests: tuple[Any, Any]) -> str:
    write_model(model_path, forests[0])
    return version_of(model_path)


def test_first_reload_publishes_and_serves(settings: Settings, model_a: str) -> None:
    client = client_for(settings)
    assert predict(client).status_code == 503

    resp = client.simulate_post("/admin/reload")

    assert resp.status_code == 200
    assert resp.json == {
        "status": "reloaded",
        "detail": "Model reloaded successfully",
        "version": model_a,
        "stage": None,  # the local source has no registry stage
    }
    served = predict(client)
    assert served.status_code == 200
    assert served.json["model_version"] == model_a
    assert served.headers["X-Model-Version"] == model_a
    assert len(served.json["predictions"]) == 2


def test_reloading_the_same_file_is_a_noop(settings: Settings, model_a: str) -> None:
    client = client_for(settings)
    assert client.simulate_post("/admin/reload").json["status"] == "reloaded"

    resp = client.simulate_post("/admin/reload")

    assert resp.status_code == 200
    assert resp.json == {
        "status": "noop",
        "detail": "Model descriptor unchanged",
        "version": None,
        "stage": None,
    }
    assert predict(client).json["model_version"] == model_a


def test_a_changed_file_is_a_new_version(
    settings: Settings, model_path: Path, model_a: str, forests: tuple[Any, Any]
) -> None:
    client = client_for(settings)
    client.simulate_post("/admin/reload")
    write_model(model_path, forests[1])

    resp = client.simulate_post("/admin/reload")

    assert resp.json["status"] == "reloaded"
    assert resp.json["version"] == version_of(model_path) != model_a
    assert predict(client).headers["X-Model-Version"] == version_of(model_path)


@pytest.mark.parametrize("path", ["/admin/reload", "/admin/rollback"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": ""}, {"Authorization": TOKEN},
     {"X-Admin-Token": TOKEN + "x"}],
    ids=["missing", "wrong", "empty", "other-header", "longer"],
)
def test_bad_or_missing_token_is_forbidden(
    make_settings: Callable[..., Settings], model_a: str, path: str, headers: dict[str, str]
) -> None:
    client = client_for(make_settings(admin_token=TOKEN))

    resp = client.simulate_post(path, headers=headers)

    assert resp.status_code == 403
    assert resp.json == {"detail": "Forbidden"}
    assert predict(client).status_code == 503, "a refused reload must not publish"


def test_right_token_is_accepted(make_settings: Callable[..., Settings], model_a: str) -> None:
    client = client_for(make_settings(admin_token=TOKEN))
    resp = client.simulate_post("/admin/reload", headers={"X-Admin-Token": TOKEN})
    assert resp.status_code == 200
    assert resp.json["version"] == model_a


def test_renamed_token_header(make_settings: Callable[..., Settings], model_a: str) -> None:
    client = client_for(make_settings(admin_token=TOKEN, admin_token_header="X-Ops-Key"))

    old_header = client.simulate_post("/admin/reload", headers={"X-Admin-Token": TOKEN})
    assert old_header.status_code == 403

    new_header = client.simulate_post("/admin/reload", headers={"x-ops-key": TOKEN})
    assert new_header.status_code == 200
    assert new_header.json["status"] == "reloaded"


def test_broken_new_model_fails_and_old_keeps_serving(
    settings: Settings, model_path: Path, model_a: str
) -> None:
    client = client_for(settings)
    client.simulate_post("/admin/reload")
    write_model(model_path, ExplodingModel())

    resp = client.simulate_post("/admin/reload")

    assert resp.status_code == 500
    assert resp.json["detail"].startswith("Reload failed:")
    assert "this model is broken on purpose" in resp.json["detail"]
    assert "Traceback" not in resp.text
    served = predict(client)
    assert served.status_code == 200
    assert served.json["model_version"] == model_a
    assert served.headers["X-Model-Version"] == model_a


def test_missing_model_file_fails_with_the_path(settings: Settings, model_path: Path) -> None:
    client = client_for(settings)
    resp = client.simulate_post("/admin/reload")
    assert resp.status_code == 500
    assert resp.json == {"detail": f"Reload failed: MODEL_PATH {model_path} does not exist"}


def test_rollback_serves_the_previous_version(
    settings: Settings, model_path: Path, model_a: str, forests: tuple[Any, Any]
) -> None:
    client = client_for(settings)
    client.simulate_post("/admin/reload")
    write_model(model_path, forests[1])
    model_b = client.simulate_post("/admin/reload").json["version"]
    assert predict(client).json["model_version"] == model_b

    resp = client.simulate_post("/admin/rollback")

    assert resp.status_code == 200
    assert resp.json["status"] == "reloaded"
    assert resp.json["version"] == model_a
    assert resp.json["stage"] is None
    assert "Rolled back" in resp.json["detail"]
    assert predict(client).json["model_version"] == model_a

    # The file on disk still holds B, so a reload brings B back.
    again = client.simulate_post("/admin/reload")
    assert again.json["version"] == model_b


def test_rollback_without_a_previous_slot_is_a_conflict(
    settings: Settings, model_a: str
) -> None:
    client = client_for(settings)
    client.simulate_post("/admin/reload")

    resp = client.simulate_post("/admin/rollback")

    assert resp.status_code == 409
    assert set(resp.json) == {"detail"}
    assert "no earlier slot" in resp.json["detail"]
    assert predict(client).json["model_version"] == model_a


def test_rollback_before_any_model_is_a_conflict(settings: Settings) -> None:
    resp = client_for(settings).simulate_post("/admin/rollback")
    assert resp.status_code == 409
    assert "no model is published yet" in resp.json["detail"]


def test_reload_while_another_holds_the_lock_is_busy(
    settings: Settings, model_a: str
) -> None:
    client = client_for(settings, lock_timeout=0.2)
    with SlotStore(open_reloader(settings).store.layout).lock():
        resp = client.simulate_post("/admin/reload")
    assert resp.status_code == 503
    assert "another reload held" in resp.json["detail"]
    assert client.simulate_post("/admin/reload").json["status"] == "reloaded"


@pytest.mark.parametrize("path", ["/admin/reload", "/admin/rollback"])
def test_unusable_state_dir_means_manager_unavailable(
    make_settings: Callable[..., Settings], tmp_path: Path, path: str
) -> None:
    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("")
    client = app_client(make_settings(state_dir=not_a_dir))

    resp = client.simulate_post(path)

    assert resp.status_code == 503
    assert resp.json == {"detail": "Model manager unavailable"}
    assert predict(client).status_code == 503
    # Whatever the body: this worker cannot predict, so it does not parse one either.
    for body in (b"{", b"x" * 2_000_000):
        answer = client.simulate_post("/predict/", body=body)
        assert (answer.status_code, answer.json) == (503, {"detail": "Model manager unavailable"})


def test_token_never_appears_in_responses_or_logs(
    make_settings: Callable[..., Settings], model_path: Path, forests: tuple[Any, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="inferd")
    write_model(model_path, forests[0])
    client = client_for(make_settings(admin_token=TOKEN))
    good = {"X-Admin-Token": TOKEN}

    responses = [
        client.simulate_post("/admin/reload", headers={"X-Admin-Token": "nope"}),
        client.simulate_post("/admin/reload", headers=good),
        client.simulate_post("/admin/reload", headers=good),
        client.simulate_post("/admin/rollback", headers=good),
        client.simulate_get("/health/", headers=good),
        client.simulate_post("/predict/", json=ROWS, headers=good),
        client.simulate_get("/metrics", headers=good),
    ]
    write_model(model_path, ExplodingModel())
    responses.append(client.simulate_post("/admin/reload", headers=good))

    assert [r.status_code for r in responses] == [403, 200, 200, 409, 200, 200, 200, 500]
    for resp in responses:
        assert TOKEN not in resp.text
        assert all(TOKEN not in value for value in resp.headers.values())
    assert caplog.records, "the admin actions were logged"
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all(TOKEN not in str(vars(record)) for record in caplog.records)


def test_every_admin_answer_carries_a_correlation_id(settings: Settings, model_a: str) -> None:
    client = client_for(settings)
    resp = client.simulate_post("/admin/reload", headers={"X-Request-ID": "req-42"})
    assert resp.headers["X-Correlation-ID"] == "req-42"
    generated = client.simulate_post("/admin/reload")
    assert len(generated.headers["X-Correlation-ID"]) == 32


def test_generated_correlation_ids_are_random_version_4_uuids() -> None:
    import uuid

    from inferd.web.middleware import new_correlation_id

    ids = [new_correlation_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for cid in ids[:50]:
        parsed = uuid.UUID(hex=cid)
        assert parsed.hex == cid
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_forked_workers_generate_different_correlation_ids() -> None:
    # gunicorn forks its workers from one master: each must draw its own ids.
    import os

    from inferd.web.middleware import new_correlation_id

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write one id and leave at once
        os.write(write_end, new_correlation_id().encode())
        os._exit(0)
    os.close(write_end)
    ours = new_correlation_id()
    theirs = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(theirs) == 32 and theirs != ours


def test_wrong_method_answers_405_in_the_detail_shape(settings: Settings) -> None:
    resp = client_for(settings).simulate_get("/admin/reload")
    assert resp.status_code == 405
    assert set(resp.json) == {"detail"}


def test_the_admin_caller_never_shows_its_token() -> None:
    from inferd.usecases.admin import Caller

    caller = Caller(token=TOKEN, remote_addr="10.0.0.7")
    assert TOKEN not in repr(caller) and TOKEN not in str(caller.audit_fields())
