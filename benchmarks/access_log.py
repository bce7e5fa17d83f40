"""What a JSON access line a request costs: the same server with and without them.

Starts inferd twice per round (2 workers, a 100-tree iris forest), identical but for
INFERD_ACCESS_LOG, drives each with wrk for 10 s, and prints req/s and the servers'
CPU milliseconds a request, side by side, for each round.

    python -m benchmarks.access_log --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.servers import Server, _spawn, _wait, clean_env, free_port
from benchmarks.tools import cpu_seconds, require_wrk, run_wrk
from tests.fakes import iris_forest, write_model

BODY = json.dumps({"features": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def measure(model: Path, state: Path, log: Path, access_log: str) -> tuple[float, float]:
    port = free_port()
    env = clean_env(INFERD_STATE_DIR=str(state), MODEL_SOURCE="local", MODEL_PATH=str(model),
                    INFERD_BIND=f"127.0.0.1:{port}", INFERD_WORKERS="2",
                    INFERD_ACCESS_LOG=access_log)
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
           "inferd.app:app"]
    url = f"http://127.0.0.1:{port}"
    server = _wait(Server("inferd", _spawn("inferd", cmd, env, log), url, f"{url}/predict/",
                          log), "/health/", 120)
    try:
        run_wrk(server.predict_url, BODY, 3, 8)  # warm-up
        before = cpu_seconds(server.pid)
        result = run_wrk(server.predict_url, BODY, 10, 8)
        cpu_ms = (cpu_seconds(server.pid) - before) * 1000 / max(result.requests, 1)
        return result.rps, cpu_ms
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="inferd-access-log-"))
    model = write_model(work / "model.joblib", iris_forest(n_estimators=100))
    for round_ in range(args.rounds):
        for access_log in ("true", "false"):
            rps, cpu_ms = measure(model, work / f"state-{round_}-{access_log}",
                                  work / f"server-{round_}-{access_log}.log", access_log)
            print(f"round {round_ + 1}  INFERD_ACCESS_LOG={access_log:<5}  "
                  f"{rps:7.0f} req/s  {cpu_ms:.3f} ms server CPU a request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
