"""Real processes on loopback: gunicorn serving inferd, and an MLflow tracking server.

Each server is started once, by one fixture, and handled the same way every time:

- it runs in its own session (process group), with its output in a log file;
- start-up polls a readiness URL with a timeout and fails the test, with the log,
  if the process exits or never becomes ready;
- shutdown sends SIGTERM, waits with a timeout and fails the test if the exit is
  not clean (non-zero exit code, a process of the group left behind, an unhandled
  error in the log); on a timeout the whole group is killed hard first.

When a test fails, the tail of every live server's log is attached to its report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0  # bootstrap fetch + two workers loading sklearn on 2 slow cores
STOP_TIMEOUT = 30.0  # gunicorn's graceful_timeout is 30 s; a clean stop takes ~1 s
HTTP_TIMEOUT = 30.0
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

# Settings a developer's shell may carry that would leak into the servers under test.
_PREFIXES = ("INFERD_", "MODEL_", "MLFLOW_", "ADMIN_", "PROMETHEUS_", "GUNICORN_")
# No telemetry, no version checks: these tests must not need the network.
_OFFLINE = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

_LIVE: list[_Process] = []


# -- process plumbing -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)}
    env.update(_OFFLINE)
    # Workers unpickle models defined in tests/fakes.py.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def fail(self, why: str) -> None:
        pytest.fail(f"{self.name}: {why}\n--- last lines of {self.log_path} ---\n"
                    f"{self.log_tail()}", pytrace=False)


def _spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> _Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process = _Process(name, proc, log_path)
    _LIVE.append(process)
    return process


def _stop(process: _Process, require_clean: bool) -> None:
    """SIGTERM, wait, then check that the whole process group is gone."""
    _LIVE.remove(process)
    proc, pgid = process.proc, process.proc.pid
    problems = []
    if proc.poll() is not None:
        problems.append(f"exited on its own before shutdown with code {proc.returncode}")
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(10)
        if proc.returncode != 0 and not problems:
            problems.append(f"exited with code {proc.returncode} after SIGTERM")
    deadline = time.monotonic() + (10 if require_clean else 20)
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _group_members(pgid)
    if left:
        problems.append(f"processes left behind after the main one exited: {left}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if problems and require_clean:
        process.fail("unclean shutdown: " + "; ".join(problems))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for process in _LIVE:
            report.sections.append((f"{process.name} log ({process.log_path})",
                                    process.log_tail()))


# -- inferd under gunicorn ------------------------------------------------------------------


@dataclass
class InferdServer(_Process):
    url: str = ""
    state_dir: Path = field(default_factory=Path)
    workers: int = 2
    admin_token: str | None = None
    model_path: Path | None = None  # MODEL_PATH, for MODEL_SOURCE=local

    # HTTP. A fresh connection per call (no Session, `Connection: close`), so calls are
    # spread over the workers the way independent clients are.
    def predict(self, rows: list[list[float]] | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(f"{self.url}/predict/", json={"features": rows or IRIS_ROWS},
                             headers={"Connection": "close", **(headers or {})},
                             timeout=HTTP_TIMEOUT)

    def health(self) -> requests.Response:
        return requests.get(f"{self.url}/health/", headers={"Connection": "close"},
                            timeout=HTTP_TIMEOUT)

    def admin(self, action: str, token: str | None = "default") -> requests.Response:
        token = self.admin_token if token == "default" else token
        headers = {"Connection": "close"}
        if token is not None:
            headers["X-Admin-Token"] = token
        return requests.post(f"{self.url}/admin/{action}", headers=headers, timeout=120)

    def versions(self, n: int) -> list[str]:
        """`model_version` of `n` predictions on fresh connections; each must be a 200
        whose X-Model-Version header agrees with its body."""
        seen = []
        for _ in range(n):
            resp = self.predict()
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert resp.headers["X-Model-Version"] == body["model_version"]
            seen.append(body["model_version"])
        return seen

    # Process and disk.
    def worker_pids(self) -> set[int]:
        return children_of(self.proc.pid)

    def current_generation(self) -> int:
        return int(Path(os.readlink(self.state_dir / "current")).name)

    def slot_names(self) -> list[str]:
        return sorted(p.name for p in (self.state_dir / "slots").iterdir())

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def loaded_generations(self) -> dict[int, set[int]]:
        """pid -> generations that process logged loading (`slot_loaded`)."""
        loaded: dict[int, set[int]] = {}
        for r in self.log_records():
            if r.get("event") == "slot_loaded":
                loaded.setdefault(r["pid"], set()).add(r["generation"])
        return loaded

    def wait_workers_ready(self, timeout: float = READY_TIMEOUT) -> set[int]:
        """Wait until `workers` workers run and each has loaded the current slot."""
        def ready() -> set[int] | None:
            if self.proc.poll() is not None:
                self.fail(f"gunicorn exited with code {self.proc.returncode}")
            pids = self.worker_pids()
            loaded = self.loaded_generations()
            generation = self.current_generation()
            if len(pids) == self.workers and all(generation in loaded.get(p, ())
                                                 for p in pids):
                return pids
            return None

        try:
            return wait_for(ready, timeout, what="every worker to load the current slot")
        except pytest.fail.Exception:
            self.fail(f"workers not ready after {timeout:.0f}s: {self.worker_pids()}")
            raise


def _health_ready(server: InferdServer) -> bool:
    if server.proc.poll() is not None:
        server.fail(f"gunicorn exited with code {server.proc.returncode} during start-up")
    try:
        resp = requests.get(f"{server.url}/health/", timeout=2)
    except requests.RequestException:
        return False
    return resp.status_code == 200 and resp.json().get("ready") is True


def start_inferd(base: Path, env: dict[str, str], *, workers: int = 2,
                 config: str = "python:inferd.gunicorn_conf",
                 admin_token: str | None = None) -> InferdServer:
    """Start gunicorn serving inferd with a state dir under `base`; return once
    /health/ is ready and every worker has loaded the current slot."""
    port = free_port()
    state = base / "state"
    full_env = clean_env(INFERD_STATE_DIR=str(state), INFERD_BIND=f"127.0.0.1:{port}",
                         INFERD_WORKERS=str(workers), **env)
    if admin_token is not None:
        full_env["ADMIN_API_TOKEN"] = admin_token
    cmd = [sys.executable, "-m", "gunicorn", "-c", config, "inferd.app:app"]
    spawned = _spawn("inferd", cmd, full_env, base / "gunicorn.log")
    server = InferdServer(spawned.name, spawned.proc, spawned.log_path,
                          url=f"http://127.0.0.1:{port}", state_dir=state, workers=workers,
                          admin_token=admin_token,
                          model_path=Path(env["MODEL_PATH"]) if "MODEL_PATH" in env else None)
    _LIVE[_LIVE.index(spawned)] = server
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while not _health_ready(server):
            if time.monotonic() > deadline:
                server.fail(f"/health/ not ready after {READY_TIMEOUT:.0f}s")
            time.sleep(0.2)
        server.wait_workers_ready(max(1.0, deadline - time.monotonic()))
    except BaseException:
        _stop(server, require_clean=False)  # the failure being raised says why
        raise
    return server


def stop_inferd(server: InferdServer) -> None:
    unhandled = [r for r in server.log_records() if r.get("event") == "unhandled"]
    _stop(server, require_clean=True)
    if unhandled:
        server.fail(f"the server logged {len(unhandled)} unhandled error(s): {unhandled[:3]}")


# -- MLflow tracking server -----------------------------------------------------------------


@dataclass
class MlflowServer:
    url: str
    process: _Process


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """`mlflow server` on 127.0.0.1 with a SQLite backend and local artifact store.

    Also sets the offline switches in this process, which registers models into it.
    """
    exe = shutil.which("mlflow")
    if exe is None:
        pytest.fail("the `mlflow` command is not installed (pip install mlflow)")
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [exe, "server",
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
           "--artifacts-destination", str(base / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # The job runner forks a dozen huey consumers that a registry does not need.
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    process = _spawn("mlflow server", cmd, env, base / "mlflow.log")
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.proc.poll() is not None:
            process.fail(f"exited with code {process.proc.returncode} during start-up")
        try:
            return requests.get(f"{url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, READY_TIMEOUT, interval=0.3, what=f"mlflow server at {url}")
    except BaseException:
        _stop(process, require_clean=False)
        raise
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _OFFLINE.items():
            mp.setenv(key, value)
        yield MlflowServer(url, process)
    # Not our server: any exit code is fine, but nothing may be left running.
    _stop(process, require_clean=False)
    if _group_members(process.proc.pid):
        process.fail("processes of the mlflow server were left running")


# -- load generation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    version: str | None
    error: str | None = None


class LoadGenerator:
    """Client threads posting predictions until stopped, or until a time or count cap.

    `fresh=True` opens a new connection per request; otherwise each thread keeps one
    keep-alive `requests.Session`, like a pooled production client.
    """

    def __init__(self, url: str, threads: int = 4, fresh: bool = False,
                 max_seconds: float = 60.0, max_requests_per_thread: int = 5000) -> None:
        self.url = f"{url}/predict/"
        self.fresh = fresh
        self.max_seconds = max_seconds
        self.max_requests = max_requests_per_thread
        self.stop_event = threading.Event()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        session = None if self.fresh else requests.Session()
        headers = {"Connection": "close"} if self.fresh else {}
        body = {"features": IRIS_ROWS}
        try:
            for _ in range(self.max_requests):
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    break
                self._record(self._one(session, body, headers))
        finally:
            if session is not None:
                session.close()

    def _one(self, session: requests.Session | None, body: dict[str, Any],
             headers: dict[str, str]) -> Outcome:
        started = time.monotonic()
        try:
            if session is None:
                resp = requests.post(self.url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
            else:
                resp = session.post(self.url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            return Outcome(started, time.monotonic(), None, None, repr(exc))
        error = None if resp.status_code == 200 else resp.text[:200]
        return Outcome(started, time.monotonic(), resp.status_code,
                       resp.headers.get("X-Model-Version"), error)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def completed(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_requests(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least `n` more requests have completed, across all threads."""
        target = self.completed() + n
        wait_for(lambda: self.completed() >= target, timeout, interval=0.02,
                 what=f"{n} more requests under load")

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT + 5)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load threads did not stop: {alive}"
