"""inferd under systemd's protocols, without a running systemd: the unit files checked
by `systemd-analyze`, readiness over a real notify socket, a listening socket handed
over by `systemd-socket-activate`, and a full restart behind a socket that outlives
the server, as inferd.socket does.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes import ConstantModel, write_model
from tests.integration.servers import (
    HTTP_TIMEOUT,
    LIVE,
    READY_TIMEOUT,
    InferdServer,
    LoadGenerator,
    Process,
    spawn,
    start_inferd,
    stop_inferd,
)
from tests.support import ROOT, clean_env, free_port, wait_for

pytestmark = pytest.mark.integration

UNITS = ROOT / "systemd"
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
            "inferd.app:app"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"`{tool}` is not installed (Debian: apt-get install systemd); "
                    ".ci/run installs it")
    return path


# -- the unit files -------------------------------------------------------------------------


def test_both_units_verify_cleanly(tmp_path: Path) -> None:
    analyze = _need("systemd-analyze")
    gunicorn = shutil.which("gunicorn")
    assert gunicorn, "gunicorn's console script is not on PATH"
    # The unit runs /opt/inferd/venv/bin/gunicorn, which `verify` requires to exist;
    # point that one path at this environment's gunicorn, and check the rest as shipped.
    service = (UNITS / "inferd.service").read_text()
    assert "/opt/inferd/venv/bin/gunicorn" in service
    (tmp_path / "inferd.service").write_text(
        service.replace("/opt/inferd/venv/bin/gunicorn", gunicorn))
    shutil.copy(UNITS / "inferd.socket", tmp_path / "inferd.socket")
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "inferd.service"),
                           str(tmp_path / "inferd.socket")],
                          capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and unparsable values too; they show as warnings.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr)


def test_hardening_exposure_is_at_most_2_and_the_readme_quotes_it() -> None:
    analyze = _need("systemd-analyze")
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                           str(UNITS / "inferd.service")],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for inferd\.service: (\d+\.\d+) (\w+)",
                      done.stdout)
    assert found, done.stdout + done.stderr
    score = float(found.group(1))
    assert score <= 2.0, done.stdout
    readme = " ".join((ROOT / "README.md").read_text().split())  # across line breaks
    assert f"exposure {found.group(1)} {found.group(2)}" in readme
    assert f"exposure {found.group(1)} {found.group(2)}" in (UNITS / "inferd.service").read_text()


def _directives(unit: str) -> dict[str, str]:
    found = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_resource_limits_are_set_and_explained() -> None:
    """The unit bounds the service's memory and tasks, and a kill at the memory bound
    (a reload child, say) does not stop the service; operations.md says why each."""
    unit = _directives((UNITS / "inferd.service").read_text())
    memory = re.fullmatch(r"(\d+)([KMG])", unit.get("MemoryMax", ""))
    assert memory, "MemoryMax= must be an absolute size"
    mib = int(memory.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024}[memory.group(2)]
    # The measured peak (a reload with 2 workers, MLflow source) is ~450 MiB.
    assert 1024 <= mib <= 8192, unit["MemoryMax"]
    assert 64 <= int(unit.get("TasksMax", "0")) <= 4096
    assert unit.get("OOMPolicy") == "continue"
    assert unit.get("NotifyAccess") in ("main", "all")
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations.split("## Resource limits", 1)[1].split("\n## ", 1)[0]
    for directive in ("MemoryMax", "TasksMax", "OOMPolicy", "NotifyAccess"):
        assert f"`{directive}=" in section, directive


# -- readiness ------------------------------------------------------------------------------
# -- readiness ------------------------------------------------------------------------------


class NotifyListener:
    """The datagram socket systemd listens on for a Type=notify service."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[str] = []

    def pending(self) -> list[str]:
        """Every datagram received so far, without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        return self.messages

    def wait_for(self, needle: str, process: Process, timeout: float = READY_TIMEOUT) -> str:
        return str(wait_for(lambda: next((m for m in self.pending() if needle in m), None),
                            timeout, f"a notification with {needle!r}", process))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    yield notify
    notify.close()


def test_ready_is_sent_only_once_a_worker_can_serve_and_status_follows_reloads(
        tmp_path: Path, listener: NotifyListener) -> None:
    model_path = tmp_path / "models" / "model.joblib"  # not there yet: nothing to serve
    server = start_inferd(tmp_path, {"MODEL_SOURCE": "local", "MODEL_PATH": str(model_path),
                                     "NOTIFY_SOCKET": listener.address}, expect_model=False)
    try:
        # gunicorn's master announces READY=1 as soon as it listens; inferd must not.
        assert server.health().status_code == 503
        assert listener.pending() == []

        write_model(model_path, ConstantModel(1))
        # The refresh leader retries the first fetch by itself, so it may be first: noop.
        first = server.admin("reload").json()
        assert first["status"] in ("reloaded", "noop"), first
        served = server.predict()  # a worker loads the new slot
        assert served.status_code == 200
        ready = listener.wait_for("READY=1", server.process)
        generation = server.current_generation()
        assert ready.splitlines() == [
            "READY=1",
            f"STATUS=Serving model version {served.json()['model_version']} "
            f"(slot generation {generation})"]
        assert any(r.get("event") == "slot_loaded" for r in server.log_records())

        write_model(model_path, ConstantModel(2))
        second = server.admin("reload").json()
        assert second["status"] == "reloaded", second
        server.versions(10)
        listener.wait_for(f"Serving model version {second['version']} ", server.process)
        assert not [m for m in listener.pending() if "Gunicorn" in m]
    finally:
        stop_inferd(server)


# -- socket activation ----------------------------------------------------------------------


def _post_predict(url: str, results: list[requests.Response | BaseException]) -> None:
    try:
        results.append(requests.post(f"{url}/predict/", json={"features": [[1.0, 2.0, 3.0, 4.0]]},
                                     headers={"Connection": "close"}, timeout=READY_TIMEOUT))
    except requests.RequestException as exc:
        results.append(exc)


def test_socket_activation_answers_the_connection_that_started_it(tmp_path: Path) -> None:
    activate = _need("systemd-socket-activate")
    model_path = write_model(tmp_path / "models" / "model.joblib", ConstantModel(7))
    port = free_port()
    notify_address = f"@inferd-test-{uuid.uuid4().hex}"
    listener = NotifyListener(notify_address)
    env = clean_env(INFERD_STATE_DIR=str(tmp_path / "state"), INFERD_WORKERS="2",
                    # gunicorn must take the socket from LISTEN_FDS, not bind this port:
                    INFERD_BIND=f"127.0.0.1:{free_port()}",
                    MODEL_SOURCE="local", MODEL_PATH=str(model_path),
                    NOTIFY_SOCKET=notify_address)
    # systemd-socket-activate passes on only the variables named with -E.
    cmd = [activate, "-l", f"127.0.0.1:{port}",
           *[f"-E{key}={value}" for key, value in env.items()], *GUNICORN]
    process = spawn("systemd-socket-activate + inferd", cmd, env, tmp_path / "gunicorn.log")
    url = f"http://127.0.0.1:{port}"
    server = InferdServer(process, url, tmp_path / "state", 2, model_path=model_path)
    try:
        wait_for(lambda: "Listening on" in process.log_text(), 30,
                 "systemd-socket-activate to listen", process)
        assert listener.pending() == []  # nothing runs before the first connection
        results: list[requests.Response | BaseException] = []
        first = threading.Thread(target=_post_predict, args=(url, results))
        first.start()
        first.join(READY_TIMEOUT + 5)
        assert len(results) == 1 and isinstance(results[0], requests.Response), results
        assert results[0].status_code == 200, results[0].text
        assert results[0].json() == {"predictions": [7], "model_version":
                                     results[0].headers["X-Model-Version"]}
        assert listener.wait_for("READY=1", process).startswith("READY=1\nSTATUS=Serving")
        assert f"Listening at: http://127.0.0.1:{port} " in process.log_text()
        # The port inferd was told to bind stays unused: the socket came from systemd.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{env['INFERD_BIND']}/health/", timeout=5)
        server.wait_workers_ready()
    finally:
        listener.close()
        stop_inferd(server)


# -- a full restart behind a socket that outlives the server --------------------------------

# What systemd does for a socket-activated service: fd 3 is the listening socket and
# LISTEN_PID names the process that is to use it (gunicorn checks both).
_EXEC_WITH_SOCKET = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _start_on_socket(listening: socket.socket, env: dict[str, str], log: Path) -> Process:
    cmd = [sys.executable, "-c", _EXEC_WITH_SOCKET, str(listening.fileno()), *GUNICORN[1:]]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(listening.fileno(),))
    process = Process("inferd (socket from the test)", proc, log)
    LIVE.append(process)
    return process


def _wait_serving(server: InferdServer) -> None:
    wait_for(server.answers_ready, READY_TIMEOUT, "/health/ to answer ready", server.process,
             interval=0.2)
    server.wait_workers_ready()


@pytest.mark.slow
def test_full_restart_under_load_loses_no_request_and_serves_the_last_slot(
        tmp_path: Path) -> None:
    model_path = write_model(tmp_path / "models" / "model.joblib", ConstantModel(4))
    listening = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listening.getsockname()[1]
    env = clean_env(INFERD_STATE_DIR=str(tmp_path / "state"), INFERD_WORKERS="2",
                    MODEL_SOURCE="local", MODEL_PATH=str(model_path))
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    server = InferdServer(_start_on_socket(listening, env, log), url, tmp_path / "state", 2,
                          model_path=model_path)
    try:
        _wait_serving(server)
        version = server.health().json()["model"]["version"]
        # The source is gone: a restart that went to it first would come up not ready.
        model_path.unlink()
        with LoadGenerator(url, threads=3, fresh=True, max_seconds=90) as load:
            load.wait_requests(30)
            server.process.stop(strict=True)
            down_at = time.monotonic()  # no inferd process exists now
            log.write_text("")  # the second run's log only
            server.process = _start_on_socket(listening, env, log)
            _wait_serving(server)
            load.wait_requests(30, timeout=HTTP_TIMEOUT)
        failures = [o for o in load.outcomes if o.status != 200]
        assert not failures, f"{len(failures)} of {len(load.outcomes)} failed: {failures[:3]}"
        assert {o.version for o in load.outcomes} == {version}
        assert not [r for r in server.log_records() if r.get("event") == "bootstrap"]
        # Requests in flight while no server ran waited in the backlog and were answered.
        assert [o for o in load.outcomes if o.started < down_at < o.ended]

    finally:
        stop_inferd(server)
        listening.close()
