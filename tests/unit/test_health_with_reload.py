"""GET /health/ before and after reloads, through the Falcon app on a real state dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.reloading.sources.local import content_hash
from tests.fakes import write_model
from tests.support import app_client

TOP_LEVEL = {"status", "ready", "details", "mlflow", "model", "admin"}
MLFLOW_NOT_USED = {"status": "not_used", "server_version": None, "verified_at": None,
                   "model_uri": None}


def client_for(settings: Settings) -> testing.TestClient:
    # No slot watcher: these tests damage a slot after its reload and expect the next
    # request (the request-path load) to find it, which a watcher would race.
    return app_client(settings, runner=open_reloader(settings))


@pytest.mark.parametrize("path", ["/health/", "/health"])
def test_not_ready_before_any_model(settings: Settings, path: str) -> None:
    resp = client_for(settings).simulate_get(path)

    assert resp.status_code == 503
    body = resp.json
    assert set(body) == TOP_LEVEL
    assert body["ready"] is False
    assert body["status"] == "unavailable"
    assert body["details"]["metrics"] == {}
    assert "no model is published yet" in body["details"]["error"]
    assert body["mlflow"] == MLFLOW_NOT_USED
    assert body["model"] is None
    assert body["admin"] == {"auth": "disabled"}


@pytest.mark.parametrize("path", ["/health/", "/health"])
def test_ready_after_a_reload(
    settings: Settings, model_path: Path, forests: tuple[Any, Any], path: str
) -> None:
    write_model(model_path, forests[0])
    client = client_for(settings)
    reloaded = client.simulate_post("/admin/reload").json

    resp = client.simulate_get(path)

    assert resp.status_code == 200
    body = resp.json
    assert set(body) == TOP_LEVEL
    assert body["ready"] is True
    assert body["status"] == "ok"
    assert body["details"] == {"metrics": {}}  # no run metrics for a local file, no error
    assert body["mlflow"] == MLFLOW_NOT_USED
    model = body["model"]
    assert model["version"] == reloaded["version"] == content_hash(model_path)[:12]
    assert model["generation"] == 1
    assert model["source"] == "local"
    assert model["estimator"] == "RandomForestClassifier"
    assert model["n_features"] == 4
    assert model["format"] == "joblib"
    assert model["uri"] == f"file://{model_path}"


def test_version_and_generation_change_after_a_second_reload(
    settings: Settings, model_path: Path, forests: tuple[Any, Any]
) -> None:
    write_model(model_path, forests[0])
    client = client_for(settings)
    client.simulate_post("/admin/reload")
    first = client.simulate_get("/health/").json["model"]

    write_model(model_path, forests[1])
    assert client.simulate_post("/admin/reload").json["status"] == "reloaded"
    second = client.simulate_get("/health/").json["model"]

    assert second["version"] != first["version"]
    assert second["version"] == content_hash(model_path)[:12]
    assert second["generation"] > first["generation"]


def test_noop_reload_changes_nothing(
    settings: Settings, model_path: Path, forests: tuple[Any, Any]
) -> None:
    write_model(model_path, forests[0])
    client = client_for(settings)
    client.simulate_post("/admin/reload")
    before = client.simulate_get("/health/").json["model"]
    client.simulate_post("/admin/reload")
    assert client.simulate_get("/health/").json["model"] == before


def test_worker_started_after_publish_is_ready_at_once(
    settings: Settings, model_path: Path, forests: tuple[Any, Any]
) -> None:
    write_model(model_path, forests[0])
    open_reloader(settings).run()  # e.g. `inferd reload --direct` or the master's bootstrap

    resp = client_for(settings).simulate_get("/health/")

    assert resp.status_code == 200
    assert resp.json["model"]["generation"] == 1


@pytest.mark.parametrize(("token", "auth"), [(None, "disabled"), ("t0k3n", "enabled")])
def test_admin_auth_is_shown(
    make_settings: Callable[..., Settings], token: str | None, auth: str
) -> None:
    resp = client_for(make_settings(admin_token=token)).simulate_get("/health/")
    assert resp.json["admin"] == {"auth": auth}
    assert "t0k3n" not in resp.text


def test_corrupt_new_slot_stays_ready_and_reports_the_error(
    settings: Settings, model_path: Path, forests: tuple[Any, Any]
) -> None:
    write_model(model_path, forests[0])
    client = client_for(settings)
    old = client.simulate_post("/admin/reload").json["version"]
    assert client.simulate_get("/health/").status_code == 200
    write_model(model_path, forests[1])
    client.simulate_post("/admin/reload")
    new_file = settings.state_dir / "slots" / "2" / "model" / model_path.name
    new_file.write_bytes(new_file.read_bytes()[:100])

    resp = client.simulate_get("/health/")

    assert resp.status_code == 200
    assert resp.json["ready"] is True
    assert resp.json["status"] == "ok"  # still serving; the lag shows in details.error
    assert resp.json["model"]["version"] == old
    assert "checksum" in resp.json["details"]["error"]


def test_mlflow_block_for_the_mlflow_source(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        model_source="mlflow",
        mlflow_tracking_uri="https://user:pw@mlflow.example:5000",
        mlflow_model_alias="champion",
    )

    body = client_for(settings).simulate_get("/health/").json

    assert body["ready"] is False
    mlflow = body["mlflow"]
    assert {"status", "server_version", "verified_at", "model_uri"} <= set(mlflow)
    assert mlflow["status"] == "unknown"
    assert mlflow["selector"] == {"kind": "alias", "value": "champion"}
    assert mlflow["tracking_uri"] == "https://***@mlflow.example:5000", "credentials leak"


def test_manager_unavailable_is_not_ready(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    resp = app_client(make_settings(state_dir=not_a_dir)).simulate_get(
        "/health/")
    assert resp.status_code == 503
    assert set(resp.json) == TOP_LEVEL
    assert resp.json["details"]["error"] == "Model manager unavailable"
