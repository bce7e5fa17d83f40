"""Reload under load: does a hot reload drop or fail any request?

Starts inferd (2 workers, local joblib models) on a free loopback port, drives
/predict/ from several threads for a bounded time, and swaps the model file and
calls /admin/reload every `--reload-every` seconds. Prints requests, non-200 answers
(must be 0), requests per second, and which versions answered.

    python benchmarks/reload_under_load.py --seconds 20 --threads 4

Read the numbers as ratios on the same machine: the load generator shares its cores.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes import iris_forest, write_model  # noqa: E402

ROW = {"features": [[5.1, 3.5, 1.4, 0.2]]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server at {url} not ready after {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--reload-every", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="inferd-bench-"))
    model_path = write_model(work / "model.joblib", iris_forest(n_estimators=10, seed=0))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INFERD_STATE_DIR": str(work / "state"), "MODEL_SOURCE": "local",
           "MODEL_PATH": str(model_path), "INFERD_BIND": f"127.0.0.1:{port}",
           "INFERD_WORKERS": "2", "INFERD_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf", "inferd.app:app"],
        env=env, stderr=open(work / "server.log", "wb"),
    )
    try:
        wait_ready(url, 90)
        counts: collections.Counter[str] = collections.Counter()
        versions: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds
        budget = args.max_requests // args.threads

        def load() -> None:
            session = requests.Session()
            for _ in range(budget):
                if time.monotonic() >= stop:
                    return
                try:
                    resp = session.post(f"{url}/predict/", json=ROW, timeout=10)
                    key = str(resp.status_code)
                    version = resp.headers.get("X-Model-Version", "-")
                except requests.RequestException as exc:
                    key, version = type(exc).__name__, "-"
                with lock:
                    counts[key] += 1
                    versions[version] += 1

        threads = [threading.Thread(target=load) for _ in range(args.threads)]
        started = time.monotonic()
        for t in threads:
            t.start()
        reloads: collections.Counter[str] = collections.Counter()
        seed = 1
        while time.monotonic() < stop:
            time.sleep(args.reload_every)
            write_model(model_path, iris_forest(n_estimators=10, seed=seed))
            seed += 1
            resp = requests.post(f"{url}/admin/reload", timeout=120)
            reloads[resp.json().get("status", str(resp.status_code))] += 1
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        total = sum(counts.values())
        failures = total - counts["200"]
        print(f"requests {total}  non-200 {failures}  req/s {total / elapsed:.0f}  "
              f"reloads {dict(reloads)}  versions answering {len(versions)}")
        print(f"answers by status: {dict(counts)}")
        return 0 if failures == 0 else 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
