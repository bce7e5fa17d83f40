"""inferd.common.notify against a real datagram socket, as systemd would listen on it."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferd.common import notify


@pytest.fixture(autouse=True)
def unclaimed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(notify, "_claimed", None)
    monkeypatch.setattr(notify, "_was_claimed", False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    yield


def _listen(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_serving_sends_ready_and_status_to_a_path_socket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with _listen(path) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify.serving("7", 12) is True
        message = listener.recv(4096).decode()
    assert message.splitlines() == ["READY=1",
                                    "STATUS=Serving model version 7 (slot generation 12)"]


def test_abstract_namespace_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"inferd-test-{uuid.uuid4().hex}"
    with _listen("\0" + name) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.send("STATUS=hello") is True
        assert listener.recv(4096) == b"STATUS=hello"


def test_claim_hides_the_socket_from_the_environment_but_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What keeps gunicorn's own early READY=1 (it reads os.environ) from going out.
    path = str(tmp_path / "notify")
    with _listen(path) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notify.claim()
        assert "NOTIFY_SOCKET" not in os.environ
        assert notify.send("READY=1") is True
        assert listener.recv(4096) == b"READY=1"


def test_without_a_notify_socket_nothing_is_sent() -> None:
    assert notify.serving("1", 1) is False
    notify.claim()
    assert notify.serving("1", 1) is False


def test_a_vanished_socket_is_logged_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify.send("READY=1") is False
    assert any(r.__dict__.get("event") == "sd_notify_failed" for r in caplog.records)
