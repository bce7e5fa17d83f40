"""The registry probe against registries that are not there: a closed port, a socket
that never answers, a missing SQLite file; and /health/ while the registry is down.
(The healthy HTTP case runs against a real `mlflow server` in the integration tests.)"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from falcon import testing

from inferd.app import create_app
from inferd.common.settings import Settings
from inferd.reloading.registry.health import check_registry
from inferd.reloading.reload import Reloader, open_reloader
from inferd.serving.registry_probe import RegistryProbe
from inferd.serving.service import WorkerService
from tests.fakes import ConstantModel, StalledRegistry, write_model
from tests.support import free_port


def health_after_a_probe(settings: Settings, reloader: Reloader) -> testing.Result:
    """GET /health once the registry probe has checked, on the store of `reloader`."""
    service = WorkerService.open(settings, runner=reloader)
    service.probe.check_now()
    return testing.TestClient(create_app(service)).simulate_get("/health")

def test_a_closed_port_is_unreachable(make_settings: Callable[..., Settings]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    health = check_registry(make_settings(model_source="mlflow", mlflow_tracking_uri=url))
    assert health.status == "unreachable"
    assert health.reason is not None and url in health.reason
    assert health.verified_at is None and health.checked_at is not None


def test_a_stalled_registry_is_unreachable_after_the_timeout(
        make_settings: Callable[..., Settings]) -> None:
    with StalledRegistry() as registry:
        settings = make_settings(model_source="mlflow", mlflow_tracking_uri=registry.url)
        started = time.monotonic()
        health = check_registry(settings, timeout=0.5)
        elapsed = time.monotonic() - started
    assert health.status == "unreachable"
    assert health.reason == f"{registry.url} did not answer within 0.5s"
    assert elapsed < 5


def test_sqlite_registry_is_ok_when_its_file_opens(make_settings: Callable[..., Settings],
                                                   tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=f"sqlite:///{db}")
    missing = check_registry(settings)
    assert missing.status == "unreachable" and "does not exist" in str(missing.reason)
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    found = check_registry(settings)
    assert found.status == "ok"
    assert found.server_version  # the installed MLflow client's version
    assert found.verified_at == found.checked_at


def test_local_source_does_not_use_a_registry(settings: Settings) -> None:
    assert check_registry(settings).status == "not_used"


def test_verified_at_keeps_the_last_good_check(make_settings: Callable[..., Settings],
                                               tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    sqlite3.connect(db).close()
    probe = RegistryProbe(make_settings(model_source="mlflow",
                                        mlflow_tracking_uri=f"sqlite:///{db}"))
    assert probe.latest().status == "unknown"
    good = probe.check_now()
    db.unlink()
    bad = probe.check_now()
    assert bad.status == "unreachable" and bad.verified_at == good.verified_at


def test_health_is_degraded_but_ready_while_the_registry_is_down(
        make_settings: Callable[..., Settings], model_path: Path) -> None:
    write_model(model_path, ConstantModel(1))
    reloader = open_reloader(make_settings())  # a slot published earlier (local file)
    reloader.run()
    url = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=url,
                             mlflow_model_alias="champion")
    resp = health_after_a_probe(settings, reloader)

    assert resp.status_code == 200
    body = resp.json
    assert (body["status"], body["ready"]) == ("degraded", True)
    mlflow = body["mlflow"]
    assert mlflow["status"] == "unreachable" and url in mlflow["reason"]
    assert mlflow["selector"] == {"kind": "alias", "value": "champion"}
    assert mlflow["verified_at"] is None and mlflow["registry_version"] is None
    assert mlflow["auto_refresh"]["mode"] == "off"


def test_not_ready_says_the_registry_is_down(make_settings: Callable[..., Settings]) -> None:
    """A first start during an outage: no slot, and the reason names the registry."""
    url = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=url,
                             auto_refresh_seconds=5.0)
    reloader = open_reloader(settings)
    resp = health_after_a_probe(settings, reloader)

    assert resp.status_code == 503
    body = resp.json
    assert (body["status"], body["ready"]) == ("unavailable", False)
    assert body["details"]["error"].startswith(
        f"no model is published yet; registry unreachable: cannot reach {url}")
    assert body["mlflow"]["auto_refresh"]["mode"] == "polling"


def test_registry_times_are_iso_8601_utc(make_settings: Callable[..., Settings],
                                         model_path: Path, tmp_path: Path) -> None:
    """`verified_at` and `checked_at` read like `2025-11-05T12:00:00Z`, as the seed's."""
    write_model(model_path, ConstantModel(1))
    reloader = open_reloader(make_settings())
    reloader.run()
    registry = tmp_path / "mlflow.db"
    registry.touch()
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=f"sqlite:///{registry}")
    before = time.time()
    mlflow = health_after_a_probe(settings, reloader).json["mlflow"]

    assert mlflow["status"] == "ok"
    for key in ("verified_at", "checked_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mlflow[key]), mlflow[key]
        stamp = datetime.strptime(mlflow[key], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert before - 1 <= stamp.timestamp() <= time.time()
