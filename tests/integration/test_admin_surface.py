"""The admin surface of a real server: the token never leaks, refusals are logged and
counted, an open admin on a public bind is loudly reported, and no request can choose
what model is loaded."""

from __future__ import annotations

import json
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


def serve_briefly(tmp_path: Path, bind_host: str) -> subprocess.CompletedProcess[str]:
    """Start inferd without a token on `bind_host` and stop it once it has warned."""
    model_path = write_model(tmp_path / "models" / "model.joblib", iris_forest(n_estimators=2))
    env = clean_env(INFERD_STATE_DIR=str(tmp_path / "state"), MODEL_SOURCE="local",
                    MODEL_PATH=str(model_path), INFERD_WORKERS="1",
                    INFERD_BIND=f"{bind_host}:{free_port()}")
    env.pop("ADMIN_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "inferd", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)  # bounded even if the line never comes
    watchdog.start()
    lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the warning is written before any worker starts
            lines.append(line)
            if "admin_auth_disabled" in line:
                break
    finally:
        watchdog.cancel()
        proc.terminate()
        rest = proc.communicate(timeout=60)[1]
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", "".join(lines) + rest)


def test_an_open_admin_on_a_public_bind_is_the_loudest_line(tmp_path: Path) -> None:
    public = serve_briefly(tmp_path / "public", "0.0.0.0")
    loopback = serve_briefly(tmp_path / "loopback", "127.0.0.1")
    def warning(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        (found,) = [r for r in lines if r.get("event") == "admin_auth_disabled"]
        return found

    loud = warning(public)
    assert loud["level"] == "critical" and loud["exposed"] is True
    assert "ANYONE WHO CAN REACH IT" in str(loud["message"])
    quiet = warning(loopback)
    assert quiet["level"] == "warning" and quiet["exposed"] is False
