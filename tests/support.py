"""Helpers shared by the unit and the integration tests: free loopback ports, a clean
environment for child processes, polling with a deadline, and a Falcon test client
over a real `WorkerService` (real state directory, no background threads)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from falcon import testing

from inferd.app import create_app
from inferd.common.settings import Settings
from inferd.reloading.reload import ReloadRunner
from inferd.serving.service import WorkerService

ROOT = Path(__file__).resolve().parents[1]

# Settings a developer's shell may carry, which must not leak into the servers under test.
_SCRUBBED_PREFIXES = ("INFERD_", "MODEL_", "MLFLOW_", "ADMIN_", "PROMETHEUS_", "GUNICORN_")
# No telemetry: these tests must not need the network.
OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


class Watched(Protocol):
    """A process `wait_for` watches (tests.integration.servers.Process)."""

    proc: subprocess.Popen[bytes]

    def running(self) -> bool: ...

    def fail(self, message: str) -> Any: ...


def app_client(settings: Settings, runner: ReloadRunner | None = None) -> testing.TestClient:
    """A test client over a worker service that is never started: no slot watcher, probe
    or refresh thread, so slots load on the request path. `runner` (a `Reloader`, for
    reloads in this process) defaults to the worker's child-process reloads."""
    return testing.TestClient(create_app(WorkerService.open(settings, runner=runner)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(OFFLINE_ENV)
    # Workers unpickle models defined in tests/fakes.py.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             process: Watched | None = None, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail after `timeout`
    (with `process`'s log), or at once if `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.running():
            process.fail(f"exited with code {process.proc.returncode} while waiting for {what}")
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:.0f}s waiting for {what}"
            if process is not None:
                process.fail(message)
            pytest.fail(message)
        time.sleep(interval)


