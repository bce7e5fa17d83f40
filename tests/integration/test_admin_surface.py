"""The admin surface of a real server: the token never leaks, refusals are logged and
counted, no token on a listener other hosts can reach refuses to start (unless the
operator says so, then loudly), a cross-site request is refused, and no request can
choose what model is loaded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.fakes import iris_forest, write_model
from tests.integration.servers import (
    HTTP_TIMEOUT,
    InferdServer,
    module_server,
)
from tests.support import clean_env, free_port

pytestmark = pytest.mark.integration

TOKEN = "admin-surface-Secret-7f3a"
CLOSE = {"Connection": "close"}


server = module_server("admin", admin_token=TOKEN)


def test_refused_tokens_are_logged_counted_and_never_echoed(server: InferdServer) -> None:
    key = 'inferd_reloads_total{action="reload",result="forbidden"}'
    before = server.scrape().get(key, 0.0)
    # Wrong tokens of every length, a prefix of the real one, and none at all.
    attempts = ["", "x", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "y" * 4096]
    answers = [server.admin("reload", token=t or None) for t in attempts]
    assert [a.status_code for a in answers] == [403] * len(attempts)
    assert all(a.json() == {"detail": "Forbidden"} for a in answers)
    assert server.scrape()[key] == before + len(attempts)
    refused = [r for r in server.log_records()
               if r.get("event") == "reload" and r.get("result") == "forbidden"]
    assert len(refused) >= len(attempts)
    assert {r["remote_addr"] for r in refused} == {"127.0.0.1"}

    health = server.health()
    assert health.json()["admin"] == {"auth": "enabled"}
    exposed = server.process.log_text() + health.text + "".join(a.text for a in answers)
    assert TOKEN not in exposed
    assert TOKEN[:-1] not in exposed


def test_no_request_can_choose_the_model(server: InferdServer, tmp_path: Path) -> None:
    assert server.model_path is not None
    elsewhere = write_model(tmp_path / "other.joblib", iris_forest(n_estimators=2, seed=3))
    serving = set(server.versions(5))
    generation = server.current_generation()
    headers = {"X-Admin-Token": TOKEN, **CLOSE}
    for attempt in (
        {"json": {"model_uri": str(elsewhere), "path": str(elsewhere), "version": "99"}},
        {"params": {"model_path": str(elsewhere), "uri": f"file://{elsewhere}"}},
        {"headers": {**headers, "X-Model-Path": str(elsewhere)}},
    ):
        kwargs = {"headers": headers, **attempt}
        resp = requests.post(f"{server.url}/admin/reload", timeout=HTTP_TIMEOUT, **kwargs)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "noop"  # the configured file, unchanged
    assert server.current_generation() == generation
    assert set(server.versions(5)) == serving


def serve_briefly(tmp_path: Path, bind_host: str, *, listening: socket.socket | None = None,
                  **extra: str) -> tuple[int | None, dict[str, object]]:
    """Start inferd without a token on `bind_host` (or on `listening`, handed over as
    systemd's socket activation does) and stop it once it has judged its listeners:
    (its exit code if it exited by itself, else None; its admin_auth_disabled line)."""
    env = clean_env(INFERD_STATE_DIR=str(tmp_path / "state"), MODEL_SOURCE="local",
                    # No model: the first fetch fails at once, nothing to wait for.
                    MODEL_PATH=str(tmp_path / "none.joblib"), INFERD_WORKERS="1",
                    INFERD_BIND=f"{bind_host}:{free_port()}", **extra)
    cmd = [sys.executable, "-m", "inferd", "serve"]
    fds: tuple[int, ...] = ()
    if listening is not None:  # fd 3 and LISTEN_PID naming gunicorn itself, as systemd does
        fds = (listening.fileno(),)
        # bash: dash reads only one-digit descriptors in a redirection.
        cmd = ["bash", "-c", f'exec 3<&{fds[0]}; export LISTEN_FDS=1 LISTEN_PID=$$; exec "$@"',
               "bash", sys.executable, "-m", "gunicorn", "-c", "python:inferd.gunicorn_conf",
               "inferd.app:app"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, pass_fds=fds)
    watchdog = threading.Timer(60, proc.kill)  # bounded even if the line never comes
    watchdog.start()
    found: dict[str, object] = {}
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the line is written before any worker starts
            if line.startswith("{") and "admin_auth_disabled" in line:
                found = json.loads(line)
                break
        exited = proc.wait(timeout=5) if found.get("refused") else None
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=60)
    return exited, found


def test_no_token_on_a_public_listener_refuses_to_start(tmp_path: Path) -> None:
    exited, line = serve_briefly(tmp_path, "0.0.0.0")
    assert exited == 2
    assert line["level"] == "critical" and line["exposed"] is True
    assert str(line["message"]).startswith("Refusing to start")


def test_socket_activation_is_judged_by_the_socket_not_by_inferd_bind(tmp_path: Path) -> None:
    # INFERD_BIND says loopback; the socket systemd would hand over listens everywhere.
    with socket.create_server(("0.0.0.0", 0)) as public:
        exited, line = serve_briefly(tmp_path / "public", "127.0.0.1", listening=public)
        port = public.getsockname()[1]
    assert exited == 2
    assert line["listeners"] == [f"0.0.0.0:{port}"]
    # And the other way round: a loopback socket with INFERD_BIND on every interface.
    with socket.create_server(("127.0.0.1", 0)) as loopback:
        exited, line = serve_briefly(tmp_path / "loopback", "0.0.0.0", listening=loopback)
    assert exited is None and line["level"] == "warning" and line["exposed"] is False


def test_an_open_admin_the_operator_asked_for_is_the_loudest_line(tmp_path: Path) -> None:
    exited, loud = serve_briefly(tmp_path / "public", "0.0.0.0", INFERD_ADMIN_OPEN="true")
    assert exited is None
    assert loud["level"] == "critical" and loud["exposed"] is True
    assert "ANYONE WHO CAN REACH IT" in str(loud["message"])
    exited, quiet = serve_briefly(tmp_path / "loopback", "127.0.0.1")
    assert exited is None
    assert quiet["level"] == "warning" and quiet["exposed"] is False


def test_a_cross_site_admin_request_is_refused_even_with_the_token(
        server: InferdServer) -> None:
    generation = server.current_generation()
    resp = requests.post(f"{server.url}/admin/reload", timeout=HTTP_TIMEOUT,
                         headers={"X-Admin-Token": TOKEN, "Origin": "http://evil.example",
                                  **CLOSE})
    assert resp.status_code == 403 and resp.json() == {"detail": "Forbidden"}
    assert server.current_generation() == generation
    (refused,) = [r for r in server.log_records() if r.get("origin") == "http://evil.example"]
    assert refused["result"] == "forbidden"
