"""inferd's worker, gthread or sync? inferd and the floor under each gunicorn worker
class, side by side.

    python -m benchmarks.worker_class [--seconds 5] [--rounds 2]

2 workers, the iris forest (cached by the suite), single-row bodies, wrk with 8
keep-alive connections (a sync worker closes each connection after one answer, so
wrk reconnects: that is the point of comparing them). inferd's worker
(`inferd.server.worker`) is gthread answering quick requests on its main thread.
Rounds alternate the classes, so that a shared machine's slow minute falls on all.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks import tools
from benchmarks.models import prepare
from benchmarks.servers import INFERD_WORKER, running, start_floor, start_inferd

BODY = b'{"features": [[5.1, 3.5, 1.4, 0.2]]}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferd-bench")
    args = parser.parse_args()
    tools.require_wrk()
    models = prepare(args.cache)
    work = Path(tempfile.mkdtemp(prefix="inferd-workers-"))
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print("| server | worker class | req/s | p50 ms | p99 ms | server CPU ms/req |")
    print("|---|---|---|---|---|---|")
    for worker_class in [INFERD_WORKER, "gthread", "sync"] * args.rounds:
        for name in ("floor", "inferd"):
            server = (start_floor(2, work / f"{name}-{worker_class}.log", worker_class)
                      if name == "floor" else
                      start_inferd(models.iris_dir, work / "state", 2,
                                   work / f"{name}-{worker_class}.log", worker_class))
            with running(server):
                tools.run_wrk(server.predict_url, BODY, 1.0, 8)
                before = tools.cpu_seconds(server.pid)
                result = tools.run_wrk(server.predict_url, BODY, args.seconds, 8)
                cpu = (tools.cpu_seconds(server.pid) - before) * 1000 / max(result.requests, 1)
            shown = worker_class.rsplit(".", 1)[-1]
            print(f"| {name} | {shown} | {result.rps:.0f} | {result.p50_ms:.2f} | "
                  f"{result.p99_ms:.2f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
