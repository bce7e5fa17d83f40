"""The registry in depth, on a 2-worker gunicorn against real `mlflow server`s:
auto-refresh by one elected leader (and its successor when it dies), serving
through a registry outage, and starting and reloading while the registry accepts
connections but never answers. (Starting with no slot during an outage is covered
by tests/unit/test_registry_health.py and tests/unit/test_refresh.py.)

Models are served by alias (`champion`), the selector inferd recommends.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd.common.settings import Settings
from inferd.reloading.refresh import LeaderLock
from inferd.reloading.reload import open_reloader
from tests.fakes import ConstantModel, StalledRegistry, write_model
from tests.integration.servers import (
    InferdServer,
    LoadGenerator,
    MlflowServer,
    start_inferd,
    start_mlflow,
    stop_inferd,
    stop_mlflow,
)
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL = 2.0  # MODEL_AUTO_REFRESH_SECONDS in these tests
NAME = "iris-refresh"


def registry_env(url: str, name: str, **extra: str) -> dict[str, str]:
    return {"MODEL_SOURCE": "mlflow", "MLFLOW_TRACKING_URI": url, "MLFLOW_MODEL_NAME": name,
            "MLFLOW_MODEL_ALIAS": "champion", "MODEL_AUTO_REFRESH_SECONDS": str(INTERVAL),
            "INFERD_REGISTRY_PROBE_SECONDS": "1", **extra}


def publish_first(url: str, name: str, scratch: Path) -> str:
    from inferd.commands.demo import publish_demo

    return publish_demo(Settings(mlflow_tracking_uri=url, state_dir=scratch,
                                 mlflow_model_name=name), n_estimators=3).version


def move_champion_to_a_new_version(url: str, name: str) -> str:
    """Register the first version's model again as the next version and point the
    alias at it (no training: this is about the registry, not the model)."""
    from mlflow.tracking import MlflowClient

    registry = MlflowClient(tracking_uri=url, registry_uri=url)
    version = registry.create_model_version(name, f"models:/{name}/1")
    registry.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def health_where(server: InferdServer, check: Any, what: str, timeout: float = 30) -> Any:
    def probe() -> Any:
        resp = server.health()
        body = resp.json()
        return body if check(resp.status_code, body) else None

    return wait_for(probe, timeout, what, server.process, interval=0.2)


def registry_ok_on_every_worker(server: InferdServer) -> None:
    """Each worker has its own probe: wait until ten answers in a row (fresh
    connections, spread over the workers by the kernel) say the registry is ok."""
    def ten_in_a_row() -> bool:
        return all(server.health().json()["mlflow"]["status"] == "ok" for _ in range(10))

    wait_for(ten_in_a_row, 20, "every worker's probe to answer ok", server.process, interval=0.2)


def applied(server: InferdServer) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("message") == "Automatic model reload applied"]


def wait_served_by_auto_refresh(server: InferdServer, version: str) -> float:
    """Seconds from now until /predict/ answers with `version`; then checks that the
    poller found it within two intervals, that every worker serves it, and that no
    one called /admin/reload."""
    published = time.monotonic()
    wait_for(lambda: server.versions(1) == [version], 2 * INTERVAL + 60,
             f"version {version} to serve without /admin/reload", server.process, interval=0.2)
    seen = time.monotonic() - published
    record = wait_for(lambda: [r for r in applied(server) if r["version"] == version], 10,
                      "the auto-refresh log line", server.process)[-1]
    assert record["uri"] == f"models:/{NAME}/{version}" and record["stage"] == "champion"
    # The poller's part: from the publish to the start of the reload that applied it
    # (the reload itself imports MLflow in a child, seconds on a busy machine).
    assert seen - record["seconds"] <= 2 * INTERVAL + 1.0, (seen, record)
    server.wait_workers_ready()  # every worker has loaded the new slot
    assert set(server.versions(20)) == {version}
    assert not [r for r in server.log_records()  # no /admin/reload
                if r.get("event") == "reload" and r.get("logger") == "inferd.admin"]
    return seen


@pytest.fixture(scope="module")
def refreshing(mlflow_server: MlflowServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferdServer]:
    assert publish_first(mlflow_server.url, NAME, tmp_path_factory.mktemp("publisher")) == "1"
    srv = start_inferd(tmp_path_factory.mktemp("inferd-refresh"),
                       registry_env(mlflow_server.url, NAME))
    yield srv
    stop_inferd(srv)


def leader_pid(server: InferdServer) -> int | None:
    return LeaderLock.holder_pid(server.state_dir / "refresh.lock")


def test_a_new_version_serves_on_every_worker_without_a_reload_call(
        refreshing: InferdServer, mlflow_server: MlflowServer) -> None:
    body = health_where(refreshing, lambda code, b: b["mlflow"]["status"] == "ok",
                        "the registry probe to answer ok")
    registry = body["mlflow"]
    assert body["status"] == "ok"
    assert registry["server_version"] == importlib.metadata.version("mlflow")
    assert registry["selector"] == {"kind": "alias", "value": "champion"}
    assert (registry["model_uri"], registry["registry_version"]) == (f"models:/{NAME}/1", "1")
    verified = datetime.strptime(registry["verified_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert verified.replace(tzinfo=UTC).timestamp() > time.time() - 30
    refresh = health_where(refreshing, lambda code, b: b["mlflow"]["auto_refresh"]["leader_pid"],
                           "a refresh leader")["mlflow"]["auto_refresh"]
    assert (refresh["mode"], refresh["interval_seconds"]) == ("polling", INTERVAL)
    assert refresh["leader_pid"] in refreshing.worker_pids()

    version = move_champion_to_a_new_version(mlflow_server.url, NAME)
    wait_served_by_auto_refresh(refreshing, version)
    # By now every worker has tried the lock more than once; one has ever held it.
    leaders = {r["pid"] for r in refreshing.log_records() if r.get("event") == "refresh_leader"}
    assert leaders == {refresh["leader_pid"]}
    assert applied(refreshing)[-1]["pid"] == refresh["leader_pid"]
    scraped = requests.get(f"{refreshing.url}/metrics", timeout=30).text
    assert 'inferd_reloads_total{action="auto_refresh",result="reloaded"} 1.0' in scraped


def test_another_worker_takes_over_when_the_leader_dies(
        refreshing: InferdServer, mlflow_server: MlflowServer) -> None:
    old = wait_for(lambda: leader_pid(refreshing), 10, "a leader", refreshing.process)
    assert old in refreshing.worker_pids()
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    new = wait_for(lambda: (pid := leader_pid(refreshing)) != old and pid, 4 * INTERVAL,
                   "another worker to take the leader lock", refreshing.process, interval=0.05)
    took = time.monotonic() - killed
    assert took <= 2 * INTERVAL, took  # one interval (+10% jitter), and some slack
    assert new in refreshing.worker_pids()

    version = move_champion_to_a_new_version(mlflow_server.url, NAME)
    wait_served_by_auto_refresh(refreshing, version)
    assert applied(refreshing)[-1]["pid"] == new


def test_serving_through_a_registry_outage(tmp_path: Path) -> None:
    """Our own tracking server, stopped and started again on the same port and data."""
    name = "iris-outage"
    base = tmp_path / "mlflow"
    registry: MlflowServer | None = start_mlflow(base)
    assert registry is not None
    url = registry.url
    port = int(url.rsplit(":", 1)[1])
    servers: list[InferdServer] = []
    try:
        publish_first(url, name, tmp_path / "publisher")
        env = registry_env(url, name, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        serving = start_inferd(tmp_path / "serving", env)
        servers.append(serving)
        registry_ok_on_every_worker(serving)

        stop_mlflow(registry)
        registry = None
        # verified_at: when the registry last answered this worker (kept through the outage)
        body = health_where(serving, lambda code, b: b["status"] == "degraded"
                            and b["mlflow"]["verified_at"] is not None,
                            "/health/ to report the registry down")
        assert body["ready"] is True and body["mlflow"]["status"] == "unreachable"
        assert url in body["mlflow"]["reason"]
        assert set(serving.versions(20)) == {"1"}
        failed = serving.admin("reload")
        assert failed.status_code == 500 and failed.json()["detail"].startswith("Reload failed:")
        assert set(serving.versions(5)) == {"1"}

        registry = start_mlflow(base, port)
        registry_ok_on_every_worker(serving)
        assert set(serving.versions(5)) == {"1"}
    finally:
        for srv in servers:
            stop_inferd(srv)
        if registry is not None:
            stop_mlflow(registry)


def test_a_stalled_registry_fails_a_reload_within_the_bound(tmp_path: Path) -> None:
    """Started during the stall with a published slot: ready, degraded. A reload gives
    up after INFERD_RELOAD_TIMEOUT, twice gunicorn's worker timeout, and no worker is
    killed; predictions go on meanwhile."""
    model = tmp_path / "model.joblib"
    write_model(model, ConstantModel(1))
    open_reloader(Settings(model_source="local", model_path=model,
                           state_dir=tmp_path / "state")).run()
    with StalledRegistry() as registry:
        srv = start_inferd(tmp_path, registry_env(
            registry.url, NAME, INFERD_RELOAD_TIMEOUT="10", INFERD_WORKER_TIMEOUT="5"))
        try:
            body = health_where(srv, lambda code, b: code == 200 and b["status"] == "degraded",
                                "/health/ to report the stalled registry")
            assert body["mlflow"]["reason"] == f"{registry.url} did not answer within 3s"
            workers = srv.worker_pids()
            with LoadGenerator(srv.url, threads=2, max_seconds=40) as load:
                started = time.monotonic()
                resp = srv.admin("reload")
                elapsed = time.monotonic() - started
            assert resp.status_code == 500
            assert "did not finish within 10s (INFERD_RELOAD_TIMEOUT)" in resp.json()["detail"]
            assert 10 <= elapsed < 15, elapsed
            assert srv.worker_pids() == workers  # gunicorn's 5 s timeout never fired
            assert load.outcomes and {o.status for o in load.outcomes} == {200}
        finally:
            stop_inferd(srv)
