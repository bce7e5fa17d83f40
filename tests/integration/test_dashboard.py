"""The Grafana dashboard's queries return data from a real Prometheus that scrapes a
real 2-worker inferd serving a registry model (so `ml_model_accuracy` has a value).

Prometheus comes from Debian's `prometheus` package (`.ci/run` installs it); without
the binary the test is skipped and says why.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd.common.settings import Settings
from tests.integration.servers import (
    InferdServer,
    MlflowServer,
    Process,
    spawn,
    start_inferd,
    stop_inferd,
)
from tests.support import clean_env, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "iris-dashboard"
SCRAPE_SECONDS = 1


@pytest.fixture(scope="module")
def server(mlflow_server: MlflowServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferdServer]:
    from inferd.commands.demo import publish_demo

    publish_demo(Settings(mlflow_tracking_uri=mlflow_server.url, mlflow_model_name=MODEL,
                          state_dir=tmp_path_factory.mktemp("dashboard-publisher")),
                 n_estimators=3)
    base = tmp_path_factory.mktemp("dashboard-inferd")
    srv = start_inferd(base, {"MODEL_SOURCE": "mlflow", "MLFLOW_TRACKING_URI": mlflow_server.url,
                              "MLFLOW_MODEL_NAME": MODEL})
    yield srv
    stop_inferd(srv)


@pytest.fixture(scope="module")
def prometheus(server: InferdServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("the `prometheus` binary is missing (apt-get install prometheus)")
    base = tmp_path_factory.mktemp("prometheus")
    config = base / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [{"job_name": "inferd",
                            "static_configs": [{"targets": [server.url.split("//")[1]]}]}],
    }))
    port = free_port()
    process: Process = spawn("prometheus", [
        exe, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ], clean_env(), base / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{url}/-/ready"), 60, "prometheus to be ready", process)
        yield url
    finally:
        process.stop(strict=False)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "dashboards" / "inferd.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def instantiate(expr: str) -> str:
    """Grafana's variables, as Grafana would fill them for this one job."""
    return (expr.replace("$__rate_interval", f"{15 * SCRAPE_SECONDS}s")
            .replace('"$job"', '"inferd"'))


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = resp.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_every_dashboard_query_returns_data(server: InferdServer, prometheus: str) -> None:
    # Traffic across many scrapes, with a reload (a noop) near the start and another
    # later, so that the reload ratios have an increase to divide.
    started = time.monotonic()
    reloads_at = [0.0, 8.0 * SCRAPE_SECONDS]
    while (elapsed := time.monotonic() - started) < 16 * SCRAPE_SECONDS:
        if reloads_at and elapsed >= reloads_at[0]:
            reloads_at.pop(0)
            assert server.admin("reload").status_code == 200
        assert server.predict().status_code == 200
        time.sleep(0.05)

    pending = {instantiate(e) for e in dashboard_queries()}
    assert pending
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for expr in sorted(pending):
            result = query(prometheus, expr)
            if any(r["value"][1] != "NaN" for r in result):
                pending.discard(expr)
        time.sleep(SCRAPE_SECONDS)
    assert not pending, f"queries without data: {sorted(pending)}"
    accuracy = query(prometheus, "max(ml_model_accuracy)")
    health = server.health().json()
    assert float(accuracy[0]["value"][1]) == health["details"]["metrics"]["accuracy"]
