"""Measuring tools for the suite: wrk runs, and CPU time and PSS of a process tree.

wrk is the load generator (C, keep-alive connections, latency percentiles). It is a
Debian package; `require_wrk` says how to install it when it is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--out (where results go) and --cache (trained models kept between runs), the
    same for every benchmark command."""
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "inferd-bench")


def require_wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("benchmarks need wrk, the HTTP load generator: install it with\n"
                         "    sudo apt-get install -y wrk      (Debian / Ubuntu)\n"
                         "and run the suite again.")
    return exe


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse_wrk(text: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    if done is None:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    seconds = float(done.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[done.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=seconds,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def wrk_script(body: bytes) -> Path:
    """A wrk Lua script that POSTs `body` as JSON (and reports non-2xx answers)."""
    fd, name = tempfile.mkstemp(prefix="inferd-wrk-", suffix=".lua")
    lua_body = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"wrk.method = 'POST'\nwrk.body = '{lua_body}'\n"
                 "wrk.headers['Content-Type'] = 'application/json'\n")
    return Path(name)


def run_wrk(url: str, body: bytes, seconds: float, connections: int,
            threads: int = 2) -> WrkResult:
    script = wrk_script(body)
    try:
        done = subprocess.run(
            [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
             "--latency", "--timeout", "10s", "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        script.unlink()
    return parse_wrk(done.stdout)


# -- a process tree ---------------------------------------------------------------------


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (gunicorn master + workers, uvicorn + workers)."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(found))


def cpu_seconds(root: int) -> float:
    """User + system CPU of the live processes of the tree."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def pss_mb(root: int, field: str = "Pss") -> float:
    """Summed proportional set size of the tree: shared pages counted once overall.
    `field="Pss_Anon"`: its anonymous part only, which pages of shared libraries that
    other processes on the machine map do not move (summed PSS moved 5-10 MB between
    runs on a shared machine, the anonymous part within 1 MB)."""
    total_kb = 0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        total_kb += int(match.group(1)) if match else 0
    return total_kb / 1024


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of `repeat` calls, in seconds: the least disturbed by a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best
