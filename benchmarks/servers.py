"""Start and stop the servers the suite compares, each in its own process group on a
free loopback port: inferd (gunicorn), `mlflow models serve` (uvicorn) and the bare
Falcon floor (gunicorn)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
_SCRUBBED = ("INFERD_", "MODEL_", "MLFLOW_", "ADMIN_", "PROMETHEUS_", "GUNICORN_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONPATH=str(ROOT),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    predict_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait(server: Server, path: str, timeout: float) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.url + path, timeout=2).status_code == 200:
                return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f}s; see {server.log}")


# inferd's own worker class (what inferd.gunicorn_conf names): the default for inferd and
# the floor alike, so that the floor measures the server stack inferd runs on.
INFERD_WORKER = "inferd.server.worker.InlineThreadWorker"


def gunicorn_worker_args(worker_class: str, threads: int) -> list[str]:
    return ["-k", worker_class, "--threads", str(threads)]


def start_inferd(model_path: Path, state_dir: Path, workers: int, log: Path,
                 worker_class: str = INFERD_WORKER, threads: int = 4,
                 **extra_env: str) -> Server:
    port = free_port()
    env = clean_env(INFERD_STATE_DIR=str(state_dir), MODEL_SOURCE="local",
                    MODEL_PATH=str(model_path), INFERD_BIND=f"127.0.0.1:{port}",
                    INFERD_WORKERS=str(workers), INFERD_THREADS=str(threads),
                    INFERD_LOG_LEVEL="info", **extra_env)
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
           *gunicorn_worker_args(worker_class, threads), "inferd.app:app"]
    url = f"http://127.0.0.1:{port}"
    server = Server("inferd", _spawn("inferd", cmd, env, log), url, f"{url}/predict/", log)
    return _wait(server, "/health/", 300)


def start_floor(workers: int, log: Path, worker_class: str = INFERD_WORKER,
                threads: int = 4) -> Server:
    """The bare Falcon app (`benchmarks.floor_app`) under inferd's own gunicorn settings
    and hooks (`-c python:inferd.gunicorn_conf`: JSON access lines, read deadlines), so
    that the gap between inferd and the floor is what inferd's application adds."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
           "-w", str(workers), "-b", f"127.0.0.1:{port}",
           *gunicorn_worker_args(worker_class, threads), "--keep-alive", "5",
           "--no-control-socket", "benchmarks.floor_app:app"]
    url = f"http://127.0.0.1:{port}"
    server = Server("floor", _spawn("floor", cmd, clean_env(), log), url,
                    f"{url}/predict/", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.post(server.predict_url, data=b"{}", timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"floor not ready; see {log}")


def start_mlflow(model_dir: Path, workers: int, log: Path) -> Server:
    exe = shutil.which("mlflow")
    if exe is None:
        raise SystemExit("the `mlflow` command is not on PATH (pip install mlflow)")
    port = free_port()
    cmd = [exe, "models", "serve", "-m", str(model_dir), "--env-manager", "local",
           "-w", str(workers), "-h", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    server = Server("mlflow models serve", _spawn("mlflow", cmd, clean_env(), log), url,
                    f"{url}/invocations", log)
    return _wait(server, "/ping", 300)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def start_mlserver(exe: Path, model_file: Path, workers: int, work: Path, log: Path) -> Server:
    """MLServer (`mlserver start`, from its own virtualenv: `exe`) serving the
    scikit-learn model in `model_file` as `iris` with `workers` inference processes
    (`parallel_workers`), its HTTP, gRPC and metrics ports free loopback ones."""
    port = free_port()
    folder = work / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": workers, "debug": False}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_file)}}))
    url = f"http://127.0.0.1:{port}"
    server = Server("mlserver", _spawn("mlserver", [str(exe), "start", str(folder)],
                                       clean_env(), log),
                    url, f"{url}/v2/models/iris/infer", log)
    return _wait(server, "/v2/models/iris/ready", 300)
