"""`inferd smoke` against answers a real inferd gives less easily: not ready (503),
a model without a known width, an unreachable port. Served by a stdlib HTTP server on
loopback; the ready paths run against real gunicorn in tests/integration/test_fleet.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from inferd.commands import cli, smoke

HEALTH: dict[str, Any] = {}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        status, body = HEALTH["answer"]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_not_ready_exits_4_with_the_servers_reason(
        url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMIN_API_TOKEN_FILE", raising=False)
    HEALTH["answer"] = (503, {"ready": False, "model": None,
                              "details": {"error": "no model is published yet"}})
    assert cli.main(["smoke", "--url", url]) == cli.EXIT_NOT_READY
    err = capsys.readouterr().err
    assert "not_ready: /health/ answered 503, not ready: no model is published yet" in err


def test_wait_polls_until_the_deadline(url: str) -> None:
    HEALTH["answer"] = (503, {"ready": False})
    ticks = iter(range(100))
    report = smoke.run(url, wait=2.0, clock=lambda: float(next(ticks)))
    assert report.failed == smoke.NOT_READY
    assert next(ticks) > 2  # asked /health/ more than once


def test_unknown_width_asks_for_a_sample_row(url: str) -> None:
    HEALTH["answer"] = (200, {"ready": True, "model": {"version": "3", "n_features": None}})
    report = smoke.run(url)
    assert (report.failed, report.checks) == (smoke.NO_SAMPLE, ["ready"])
    assert "--features" in report.detail


def test_sample_row_has_the_models_width() -> None:
    assert smoke.sample_rows({"model": {"n_features": 3}}) == [[0.0, 0.0, 0.0]]
    assert smoke.sample_rows({"model": None}) is None


def test_features_that_are_not_json_are_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["smoke", "--url", "http://127.0.0.1:9", "--features", "[[1,"]) == \
        cli.EXIT_CONFIG
    assert "--features is not JSON" in capsys.readouterr().err
