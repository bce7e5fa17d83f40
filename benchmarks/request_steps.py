"""What one /predict/ request costs in a worker, step by step.

Builds the real Falcon app on a compiled iris forest (100 trees) in a temporary state
directory, then times each step of the request path in a loop (median of `--n` runs,
microseconds): the generation check, body decode and validation, predict, encode,
metrics and logging, and the whole request through Falcon (`falcon.testing`, no
socket). Run it before and after a change to the request path.

    python -m benchmarks.request_steps [--rows 1] [--n 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROW = [5.1, 3.5, 1.4, 0.2]


def timed(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferd-steps-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    (work / "metrics").mkdir()

    from falcon import testing

    from inferd.app import create_app
    from inferd.common import logs, metrics
    from inferd.common.settings import Settings
    from inferd.reloading.reload import open_reloader
    from inferd.serving.service import WorkerService
    from inferd.web.codecs import native as payload
    from tests.fakes import iris_forest, write_model

    logs.configure("info")
    model_path = write_model(work / "model.joblib", iris_forest(n_estimators=100))
    settings = Settings(state_dir=work / "state", model_source="local", model_path=model_path)
    open_reloader(settings).run()
    app = create_app(WorkerService.open(settings))  # never started: no threads
    client = testing.TestClient(app)
    from inferd.serving.holder import ModelHolder

    reloader = open_reloader(settings)
    holder = ModelHolder(reloader.store, reloader.counter)
    model = holder.current()
    body = orjson.dumps({"features": [ROW] * args.rows})
    rows = payload.decode(body, 10_000)
    predictions = model.predict(rows)
    access = logging.getLogger("inferd.access")
    steps: dict[str, Callable[[], Any]] = {
        "generation check (holder.current)": holder.current,
        "JSON decode (orjson.loads)": lambda: orjson.loads(body),
        "decode + validate (payload.decode)": lambda: payload.decode(body, 10_000),
        f"predict ({model.form})": lambda: model.predict(rows),
        "encode (payload.encode)": lambda: payload.encode(predictions, model.version),
        "metrics (counter + histogram)": lambda: metrics.observe_request(
            "POST", "/predict", "200", 0.001),
        "correlation id (uuid4)": lambda: uuid.uuid4().hex,
        "access log (skipped for 2xx predict)": lambda: access.isEnabledFor(logging.INFO),
        "whole request through Falcon": lambda: client.simulate_post(
            "/predict/", body=body, headers={"Content-Type": "application/json"}),
    }
    print(f"| step ({args.rows} row(s)) | median us |\n|---|---|")
    for name, fn in steps.items():
        print(f"| {name} | {timed(fn, args.n):.1f} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
