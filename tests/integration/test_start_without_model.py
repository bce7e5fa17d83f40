"""Starting before the model exists, as on a fresh VM whose deploy has not run yet:
the first fetch fails, gunicorn still comes up, answers 503 not ready, and the first
successful fetch (a POST /admin/reload, or the refresh leader's own retry) makes it
ready without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import ConstantModel, write_model
from tests.integration.servers import InferdServer, start_inferd, stop_inferd

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InferdServer]:
    missing = tmp_path / "models" / "model.joblib"
    srv = start_inferd(tmp_path, {"MODEL_SOURCE": "local", "MODEL_PATH": str(missing)},
                       expect_model=False)
    yield srv
    stop_inferd(srv)


def test_not_ready_until_the_first_successful_reload(server: InferdServer) -> None:
    assert any(r.get("event") == "bootstrap" and r.get("result") == "failed"
               for r in server.log_records())
    health = server.health()
    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["ready"], body["model"]) == ("unavailable", False, None)
    predicted = server.predict()
    assert predicted.status_code == 503
    assert predicted.json()["detail"]

    failed = server.admin("reload")  # MODEL_PATH still missing
    assert failed.status_code == 500
    assert "does not exist" in failed.json()["detail"]
    assert server.health().status_code == 503

    assert server.model_path is not None
    write_model(server.model_path, ConstantModel(2))
    reloaded = server.admin("reload")
    assert reloaded.status_code == 200, reloaded.text
    # The refresh leader retries the first fetch by itself while no slot exists, so it
    # may have published the file first: then this reload is a noop.
    assert reloaded.json()["status"] in ("reloaded", "noop")
    version = server.health().json()["model"]["version"]
    assert set(server.versions(20)) == {version}
    assert server.predict().json()["predictions"] == [2, 2, 2]
    health = server.health()
    assert health.status_code == 200 and health.json()["ready"] is True
