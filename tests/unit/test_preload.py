"""What the gunicorn master preloads before it forks (inferd/server/preload.py): every
module a worker serves with, so that a worker, started in a fresh interpreter after
the preload as gunicorn forks it from the master, imports nothing of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from tests.fakes import write_model
from tests.support import clean_env

ROW = [5.1, 3.5, 1.4, 0.2]
# A worker's start and one request on each protocol's route, after the preload.
WORKER = f"""
import json, sys
from falcon import testing
from inferd.server.preload import preload_serving_modules
preload_serving_modules()
preloaded = set(sys.modules)
from inferd.app import create_app
from inferd.common.settings import load_settings
from inferd.serving.service import WorkerService
client = testing.TestClient(create_app(WorkerService.open(load_settings()).start()))
tensor = {{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [{ROW}]}}
statuses = [
    client.simulate_post("/predict/", json={{"features": [{ROW}]}}).status_code,
    client.simulate_post("/invocations", json={{"inputs": [{ROW}]}}).status_code,
    client.simulate_post("/v2/models/iris-model/infer", json={{"inputs": [tensor]}}).status_code,
    client.simulate_get("/health/").status_code,
    client.simulate_get("/metrics").status_code,
    client.simulate_get("/openapi.json").status_code,
    client.simulate_get("/docs").status_code,
]
print(json.dumps({{"statuses": statuses, "imported": sorted(set(sys.modules) - preloaded)}}))
"""


def test_a_worker_imports_nothing_the_master_did_not_preload(
        make_settings: Callable[..., Settings], model_path: Path,
        forests: tuple[Any, Any], tmp_path: Path) -> None:
    settings = make_settings()
    write_model(model_path, forests[0])
    open_reloader(settings).run()  # a compiled slot, as a worker finds it
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = clean_env(INFERD_STATE_DIR=str(settings.state_dir), MODEL_SOURCE="local",
                    MODEL_PATH=str(model_path), INFERD_LOG_LEVEL="warning",
                    PROMETHEUS_MULTIPROC_DIR=str(metrics))
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["statuses"] == [200] * 7
    # inferd.app itself wires the app; everything it and the requests use is shared.
    assert answer["imported"] == ["inferd.app"]

