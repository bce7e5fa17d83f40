"""Real processes on loopback for the integration tests: gunicorn serving inferd, an
MLflow tracking server, and client threads that put load on them.

Every server is handled the same way:

- it runs in its own session (process group), its output in a log file;
- start-up polls a readiness URL with a timeout and fails the test, with the log,
  if the process exits or never becomes ready;
- shutdown sends SIGTERM, waits with a timeout and fails the test if the stop is not
  clean: a non-zero exit code, a process of its group left running, or (inferd) an
  unhandled error in the log. On a timeout the whole group is killed hard first.

`LIVE` lists the running servers; conftest.py attaches their logs to a failed test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ROOT, clean_env, free_port, wait_for

READY_TIMEOUT = 90.0  # a bootstrap fetch plus two workers importing sklearn, on 2 slow cores
STOP_TIMEOUT = 30.0  # gunicorn's graceful_timeout; a clean stop takes about a second
HTTP_TIMEOUT = 30.0
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]



# -- processes ------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The fields after the command name, which is in parentheses and may hold spaces.
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


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def running(self) -> bool:
        return self.proc.poll() is None

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

    def stop(self, *, strict: bool, check_exit_code: bool = True) -> None:
        """SIGTERM, wait, and make sure nothing of the process group is left running.

        strict: fail the test if the stop was unclean (after cleaning up regardless).
        """
        if self in LIVE:
            LIVE.remove(self)
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        problems = []
        if not self.running():
            problems.append(f"had exited before shutdown, with code {self.proc.returncode}")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(10)
            else:
                if check_exit_code and self.proc.returncode != 0:
                    problems.append(f"exited with code {self.proc.returncode} on SIGTERM")
        deadline = time.monotonic() + 15
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left := group_members(pgid):
            problems.append(f"processes left running after it exited: {left}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        if problems and strict:
            self.fail("unclean shutdown: " + "; ".join(problems))


LIVE: list[Process] = []


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    process = Process(name, proc, log_path)
    LIVE.append(process)
    return process


def _get_ok(url: str) -> requests.Response | None:
    try:
        resp = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return resp if resp.status_code == 200 else None


# -- inferd under gunicorn ------------------------------------------------------------------


@dataclass
class InferdServer:
    process: Process
    url: str
    state_dir: Path
    workers: int
    admin_token: str | None = None
    model_path: Path | None = None  # MODEL_PATH, with MODEL_SOURCE=local

    # HTTP. A fresh connection per call (no Session, `Connection: close`), so the calls
    # spread over the workers the way independent clients do.
    def predict(self, rows: list[list[float]] | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(f"{self.url}/predict/", json={"features": rows or IRIS_ROWS},
                             headers={"Connection": "close", **(headers or {})},
                             timeout=HTTP_TIMEOUT)

    def health(self, token: str | None = "configured") -> requests.Response:
        """GET /health/, by default with the server's own token (the whole report;
        `token=None`: the public view anyone gets)."""
        token = self.admin_token if token == "configured" else token
        headers = {"Connection": "close"}
        if token is not None:
            headers["X-Admin-Token"] = token
        return requests.get(f"{self.url}/health/", headers=headers, timeout=HTTP_TIMEOUT)

    def scrape(self) -> dict[str, float]:
        """One /metrics scrape, parsed by prometheus-client's own parser:
        `name{label="v",...}` (labels sorted) -> value."""
        from prometheus_client.parser import text_string_to_metric_families

        resp = requests.get(f"{self.url}/metrics", headers={"Connection": "close"},
                            timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, resp.text
        samples = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    def admin(self, action: str, token: str | None = "configured") -> requests.Response:
        """POST /admin/<action>, by default with the server's own token."""
        token = self.admin_token if token == "configured" else token
        headers = {"Connection": "close"}
        if token is not None:
            headers["X-Admin-Token"] = token
        return requests.post(f"{self.url}/admin/{action}", headers=headers, timeout=120)

    def versions(self, n: int) -> list[str]:
        """`model_version` of `n` predictions on fresh connections; each must answer 200
        with an X-Model-Version header equal to the body's version."""
        seen = []
        for _ in range(n):
            resp = self.predict()
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert resp.headers["X-Model-Version"] == body["model_version"]
            seen.append(body["model_version"])
        return seen

    # The processes and the state directory.
    def worker_pids(self) -> set[int]:
        return children_of(self.process.proc.pid)

    def current_generation(self) -> int:
        return int(Path(os.readlink(self.state_dir / "current")).name)

    def slot_names(self) -> list[str]:
        return sorted(p.name for p in (self.state_dir / "slots").iterdir())

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.process.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def loaded_generations(self) -> dict[int, set[int]]:
        """pid -> the generations that process logged loading (event `slot_loaded`)."""
        loaded: dict[int, set[int]] = {}
        for r in self.log_records():
            if r.get("event") == "slot_loaded":
                loaded.setdefault(r["pid"], set()).add(r["generation"])
        return loaded

    def wait_workers_ready(self, timeout: float = READY_TIMEOUT) -> set[int]:
        """Wait until `workers` workers run and each has loaded the current slot.

        A worker loads a new slot at its next request, so an idle one is nudged with
        GET /health/ on fresh connections until it has (the kernel picks the worker).
        """
        def ready() -> set[int] | None:
            pids = self.worker_pids()
            loaded = self.loaded_generations()
            generation = self.current_generation()
            if len(pids) == self.workers and all(generation in loaded.get(p, ()) for p in pids):
                return pids
            if len(pids) == self.workers and any(loaded.get(p) for p in pids):
                with contextlib.suppress(requests.RequestException):
                    requests.get(f"{self.url}/health/", headers={"Connection": "close"},
                                 timeout=HTTP_TIMEOUT)
            return None

        pids: set[int] = wait_for(ready, timeout, "every worker to load the current slot",
                                  self.process)
        return pids

    def answers_ready(self) -> bool:
        resp = _get_ok(f"{self.url}/health/")
        return resp is not None and resp.json().get("ready") is True

    def answers_without_model(self) -> bool:
        try:
            resp = requests.get(f"{self.url}/health/", timeout=2)
        except requests.RequestException:
            return False
        return (resp.status_code == 503 and resp.json().get("ready") is False
                and len(self.worker_pids()) == self.workers)


def start_inferd(base: Path, env: dict[str, str], *, workers: int = 2,
                 config: str = "python:inferd.gunicorn_conf",
                 admin_token: str | None = None, expect_model: bool = True,
                 port: int | None = None) -> InferdServer:
    """Start gunicorn serving inferd, its state dir under `base`, on `port` (default: a
    free one); return once /health/ answers ready and every worker has loaded the
    current slot (or, with expect_model=False, once every worker runs and /health/
    answers 503 not ready)."""
    port = port or free_port()
    state = Path(env.get("INFERD_STATE_DIR", base / "state"))
    full_env = clean_env(**{"INFERD_STATE_DIR": str(state), "INFERD_BIND": f"127.0.0.1:{port}",
                            "INFERD_WORKERS": str(workers), **env})
    if admin_token is not None:
        full_env["ADMIN_API_TOKEN"] = admin_token
    cmd = [sys.executable, "-m", "gunicorn", "-c", config, "inferd.app:app"]
    process = spawn("inferd", cmd, full_env, base / "gunicorn.log")
    server = InferdServer(process, f"http://127.0.0.1:{port}", state, workers, admin_token,
                          Path(env["MODEL_PATH"]) if "MODEL_PATH" in env else None)
    started = time.monotonic()
    try:
        if not expect_model:
            wait_for(server.answers_without_model, READY_TIMEOUT,
                     "/health/ to answer 503 (not ready) with every worker forked", process,
                     interval=0.2)
            return server
        wait_for(server.answers_ready, READY_TIMEOUT, "/health/ to answer ready", process,
                 interval=0.2)
        server.wait_workers_ready(max(1.0, READY_TIMEOUT - (time.monotonic() - started)))
    except BaseException:
        process.stop(strict=False)  # the failure being raised says why
        raise
    return server


def start_local(base: Path, model: object, *, admin_token: str | None = None,
                workers: int = 2, **env: str) -> InferdServer:
    """`start_inferd` with MODEL_SOURCE=local serving `model`, saved with joblib at
    `base/models/model.joblib` (the server's `model_path`, for tests that swap it)."""
    from tests.fakes import write_model

    model_path = write_model(base / "models" / "model.joblib", model)
    return start_inferd(base, {"MODEL_SOURCE": "local", "MODEL_PATH": str(model_path), **env},
                        admin_token=admin_token, workers=workers)


def module_server(name: str, *, admin_token: str | None = None, workers: int = 2,
                  **env: str) -> Any:
    """A module-scoped fixture: a server (2 workers unless told) on a small iris forest
    from a local file, started once for the module's tests and stopped cleanly after them.

        server = module_server("admin", admin_token=TOKEN)
    """
    from tests.fakes import iris_forest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferdServer]:
        srv = start_local(tmp_path_factory.mktemp(name), iris_forest(n_estimators=3),
                          admin_token=admin_token, workers=workers, **env)
        yield srv
        stop_inferd(srv)

    return server


def stop_inferd(server: InferdServer) -> None:
    unhandled = [r for r in server.log_records() if r.get("event") == "unhandled"]
    server.process.stop(strict=True)
    if unhandled:
        server.process.fail(f"logged {len(unhandled)} unhandled error(s): {unhandled[:3]}")


# -- MLflow tracking server -----------------------------------------------------------------


@dataclass
class MlflowServer:
    process: Process
    url: str


def start_mlflow(base: Path, port: int | None = None) -> MlflowServer:
    """`mlflow server` on 127.0.0.1, SQLite backend, artifacts under `base`; pass the
    `port` of a stopped one (and its `base`) to start it again with the same data."""
    exe = shutil.which("mlflow")
    if exe is None:
        pytest.fail("the `mlflow` command is not on PATH (pip install mlflow)")
    port = port or free_port()
    cmd = [exe, "server",
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
           "--artifacts-destination", str(base / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # Job execution would fork a job runner and a dozen huey consumers a registry
    # does not need, slowing start-up and shutdown.
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    process = spawn("mlflow server", cmd, env, base / "mlflow.log")
    server = MlflowServer(process, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _get_ok(f"{server.url}/health"), READY_TIMEOUT,
                 f"mlflow server at {server.url}", process, interval=0.3)
    except BaseException:
        process.stop(strict=False)
        raise
    return server


def stop_mlflow(server: MlflowServer) -> None:
    # Not our program, so its exit code on SIGTERM is not ours to judge; but it must
    # stop within the timeout and leave nothing running.
    server.process.stop(strict=True, check_exit_code=False)


# -- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    version: str | None
    error: str | None = None


class LoadGenerator:
    """Client threads posting predictions until stopped, or until a time or count cap.

    fresh=True opens a new connection per request; otherwise each thread keeps one
    keep-alive `requests.Session`, like a pooled production client. A thread starts a
    request at most every `pace_seconds`, and so at most max_seconds / pace_seconds of
    them: the time cap is the one a test meets. (A fixed count of 5000 a thread ran out
    in about 15 s once a kept-alive prediction took 3 ms, and stopped the load in the
    middle of tests that need it for a minute.)
    """

    def __init__(self, url: str, threads: int = 4, fresh: bool = False,
                 max_seconds: float = 60.0, pace_seconds: float = 0.001) -> None:
        self.url = f"{url}/predict/"
        self.fresh = fresh
        self.max_seconds = max_seconds
        self.pace_seconds = pace_seconds
        self.max_requests = int(max_seconds / pace_seconds) + 1
        self.stop_event = threading.Event()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        session = None if self.fresh else requests.Session()
        try:
            for _ in range(self.max_requests):
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    break
                outcome = self._one(session)
                with self._lock:
                    self.outcomes.append(outcome)
                time.sleep(max(0.0, outcome.started + self.pace_seconds - time.monotonic()))
        finally:
            if session is not None:
                session.close()

    def _one(self, session: requests.Session | None) -> Outcome:
        body = {"features": IRIS_ROWS}
        started = time.monotonic()
        try:
            if session is None:
                resp = requests.post(self.url, json=body, headers={"Connection": "close"},
                                     timeout=HTTP_TIMEOUT)
            else:
                resp = session.post(self.url, json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            return Outcome(started, time.monotonic(), None, None, repr(exc))
        error = None if resp.status_code == 200 else resp.text[:200]
        return Outcome(started, time.monotonic(), resp.status_code,
                       resp.headers.get("X-Model-Version"), error)

    def completed(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_requests(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least `n` more requests have completed, over all threads."""
        target = self.completed() + n

        def arrived() -> bool:
            if self.completed() >= target:
                return True
            if not any(thread.is_alive() for thread in self._threads):
                pytest.fail(f"the load stopped before {n} more requests: its cap of "
                            f"{self.max_seconds:g} s or {self.max_requests} requests a "
                            "thread ran out")
            return False

        wait_for(arrived, timeout, f"{n} more requests under load", interval=0.02)

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
