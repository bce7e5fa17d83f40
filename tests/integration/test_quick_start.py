"""The README's quick start, as a newcomer runs it: `inferd serve --demo` on the embedded
default registry (MLflow on SQLite in the state dir), a prediction, `inferd demo
publish`, a reload to version 2, and a noop after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import READY_TIMEOUT, InferdServer, spawn, stop_inferd
from tests.support import clean_env, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serve_demo_then_publish_and_reload(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(INFERD_STATE_DIR=str(tmp_path / "state"), INFERD_BIND=f"127.0.0.1:{port}")
    process = spawn("inferd serve --demo", [sys.executable, "-m", "inferd", "serve", "--demo"],
                    env, tmp_path / "serve.log")
    server = InferdServer(process, f"http://127.0.0.1:{port}", tmp_path / "state", 2)
    try:
        wait_for(server.answers_ready, READY_TIMEOUT * 2, "/health/ to answer ready", process,
                 interval=0.5)
        first = server.predict([[5.1, 3.5, 1.4, 0.2]])
        assert first.status_code == 200
        assert first.json() == {"predictions": [0], "model_version": "1"}
        health = server.health().json()
        assert health["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
        assert set(health["details"]["metrics"]) >= {"accuracy", "f1_score"}
        assert (health["model"]["stage"], health["model"]["alias"]) == ("Production", "champion")

        published = subprocess.run(
            [sys.executable, "-m", "inferd", "demo", "publish", "--n-estimators", "20"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert published.returncode == 0, published.stderr[-2000:]

        reloaded = server.admin("reload", token=None)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json() == {"status": "reloaded", "detail": "Model reloaded successfully",
                                   "version": "2", "stage": "Production"}
        assert set(server.versions(20)) == {"2"}
        noop = server.admin("reload", token=None)
        assert noop.json() == {"status": "noop", "detail": "Model descriptor unchanged",
                               "version": None, "stage": None}
        artifacts = tmp_path / "state" / "mlartifacts"
        assert artifacts.is_dir() and not (Path.cwd() / "mlruns").exists()
    finally:
        stop_inferd(server)
