"""What the gunicorn master preloads before it forks (inferd/server/preload.py): every
module a worker serves with, so a worker imports nothing of its own, and glibc's arena
cap, so a worker's threads share malloc arenas. Both in a fresh interpreter, as the
master is."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


ARENAS = """
import ctypes, ctypes.util, os, sys, tempfile, threading
from inferd.server.preload import cap_malloc_arenas
capped = sys.argv[1] == "capped"
if capped:
    assert cap_malloc_arenas()
start = threading.Barrier(5)
def allocate():
    start.wait()
    buffers = [bytearray(4096) for _ in range(64)]  # malloc, from this thread
    start.wait()
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
start.wait()
start.wait()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(out.name).read().count("<heap nr="))
for thread in threads:
    thread.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.parametrize(("mode", "most"), [("capped", 2), ("default", None)])
def test_worker_threads_share_two_malloc_arenas(mode: str, most: int | None) -> None:
    env = clean_env()
    env.pop("MALLOC_ARENA_MAX", None)
    done = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    arenas = int(done.stdout)
    if most is not None:
        assert arenas <= most
    else:  # without the cap each thread gets one: the check above can fail
        assert arenas >= 5
