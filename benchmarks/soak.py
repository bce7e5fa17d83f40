"""Soak: minutes of prediction load with a reload every two seconds.

Starts inferd (local joblib models, 2 workers) on a free loopback port, drives
/predict/ from keep-alive client threads, and every `--reload-every` seconds puts a
different model at MODEL_PATH and calls /admin/reload. At the end it prints requests,
failures (must be 0), reloads by answer, and each worker's memory (PSS and RSS from
/proc) after the warm-up and at the end, so a leak per reload shows as growth.

    python -m benchmarks.soak --minutes 3

Not a CI test: it runs for minutes. Exit code 1 when any request failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.servers import start_inferd
from benchmarks.tools import pss_mb, tree_pids
from tests.fakes import iris_forest, write_model

ROW = {"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


def memory_mb(pid: int) -> dict[str, float]:
    """PSS and RSS of one process, in MB."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    found = {key: int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]
             for key in ("Pss", "Rss")}
    return {"pss_mb": round(found["Pss"] / 1024, 1), "rss_mb": round(found["Rss"] / 1024, 1)}


def workers_memory(master: int) -> dict[int, dict[str, float]]:
    return {pid: memory_mb(pid) for pid in tree_pids(master) if pid != master}


class Load:
    """Client threads posting predictions until the deadline or their request cap."""

    def __init__(self, url: str, threads: int, deadline: float, cap: int) -> None:
        self.url, self.deadline, self.cap = url, deadline, cap
        self.answers: collections.Counter[str] = collections.Counter()
        self.versions: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        with requests.Session() as session:
            for _ in range(self.cap):
                if time.monotonic() >= self.deadline:
                    return
                try:
                    resp = session.post(self.url, json=ROW, timeout=30)
                    key, version = str(resp.status_code), resp.headers.get("X-Model-Version")
                except requests.RequestException as exc:
                    key, version = type(exc).__name__, None
                with self.lock:
                    self.answers[key] += 1
                    self.versions[version or "-"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--reload-every", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="inferd-soak-"))
    models = [iris_forest(n_estimators=20, seed=seed) for seed in range(6)]
    model_path = write_model(work / "model.joblib", models[0])
    server = start_inferd(model_path, work / "state", args.workers, work / "server.log")
    try:
        for _ in range(200):  # warm every worker before the first memory reading
            requests.post(server.predict_url, json=ROW, headers={"Connection": "close"},
                          timeout=30)
        before = workers_memory(server.pid)
        total_before = pss_mb(server.pid)
        started = time.monotonic()
        deadline = started + args.minutes * 60
        load = Load(server.predict_url, args.threads, deadline,
                    args.max_requests // args.threads)
        for thread in load.threads:
            thread.start()
        reloads: collections.Counter[str] = collections.Counter()
        reload_seconds: list[float] = []
        turn = 1
        while time.monotonic() + args.reload_every < deadline:
            time.sleep(args.reload_every)
            write_model(model_path, models[turn % len(models)])
            turn += 1
            asked = time.monotonic()
            resp = requests.post(f"{server.url}/admin/reload", timeout=120)
            reload_seconds.append(time.monotonic() - asked)
            reloads[resp.json().get("status", str(resp.status_code))] += 1
        for thread in load.threads:
            thread.join(60)
        elapsed = time.monotonic() - started
        after = workers_memory(server.pid)
        figures: dict[str, Any] = {
            "seconds": round(elapsed, 1),
            "requests": sum(load.answers.values()),
            "failures": sum(n for key, n in load.answers.items() if key != "200"),
            "answers": dict(load.answers),
            "requests_per_second": round(sum(load.answers.values()) / elapsed),
            "reloads": dict(reloads),
            "reload_seconds_max": round(max(reload_seconds, default=0.0), 2),
            "versions_answering": len(load.versions),
            "workers_before": {str(k): v for k, v in before.items()},
            "workers_after": {str(k): v for k, v in after.items()},
            "replaced_workers": sorted(set(before) ^ set(after)),
            "total_pss_mb_before": round(total_before, 1),
            "total_pss_mb_after": round(pss_mb(server.pid), 1),
        }
    finally:
        server.stop()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
