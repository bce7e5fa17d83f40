"""Which requests a worker answers on its main thread: `inferd.server.inline` judges
whether a request is whole in the bytes peeked at, and `inferd.app.quick_routes` which
routes are quick; the worker's answer on the main thread, held and sent without waiting,
over a real socket pair. The worker under gunicorn is in
tests/integration/test_inline_worker.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.app import quick_routes
from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.server import inline
from inferd.server.inline import RequestHead, whole_request
from inferd.server.worker import InlineThreadWorker, _send_rest
from inferd.serving.holder import ModelHolder
from tests.fakes import ConstantModel, write_model

BODY = b'{"features": [[1, 2, 3, 4]]}'


def request(*headers: str, body: bytes = BODY, line: str = "POST /predict/?x=1 HTTP/1.1",
            length: bool = True) -> bytes:
    head = [line, "Host: 127.0.0.1", *headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_a_whole_request_gives_its_method_and_path() -> None:
    assert whole_request(request()) == RequestHead("POST", "/predict/")
    assert whole_request(request(line="GET /ping HTTP/1.0", body=b"", length=False)) == (
        RequestHead("GET", "/ping"))
    # What follows it (a pipelined request, a partial one) is not its concern.
    assert whole_request(request() + b"POST /pre") == RequestHead("POST", "/predict/")
    assert whole_request(request("content-LENGTH:  28 ".replace("28", str(len(BODY))),
                                 length=False)) == RequestHead("POST", "/predict/")


@pytest.mark.parametrize("peeked", [
    request()[:-1],  # the body's last byte has not come
    request()[:30],  # nor the end of the head
    b"",
    request("Transfer-Encoding: chunked"),
    request("Expect: 100-continue"),
    request("Upgrade: h2c", "Connection: Upgrade"),
    request(f"Content-Length: {len(BODY)}"),  # two lengths
    request(length=False, body=b"").replace(b"\r\n\r\n", b"\r\nContent-Length: -1\r\n\r\n"),
    request(length=False, body=b"").replace(b"\r\n\r\n", b"\r\nContent-Length: 1e3\r\n\r\n"),
    request(" folded: continuation"),
    request("Bad header"),
    request("Name : value"),
    request(line="POST /predict/ HTTP/2.0"),
    request(line="POST /predict/"),
    request(line="POST predict HTTP/1.1"),
    request(line="P0ST /predict/ HTTP/1.1"),
    "POST /pr\u00e9dict HTTP/1.1\r\n\r\n".encode(),
    request(body=b"x" * inline.MAX_INLINE_BYTES),  # whole, but over the limit
])
def test_anything_not_surely_whole_and_small_is_not(peeked: bytes) -> None:
    assert whole_request(peeked) is None


@pytest.fixture
def rule() -> Iterator[Callable[[RequestHead], bool]]:
    seen: list[RequestHead] = []

    def quick(head: RequestHead) -> bool:
        seen.append(head)
        return head.path == "/predict/"

    inline.answer_inline_when(quick)
    yield quick
    inline.answer_inline_when(None)


def test_the_applications_rule_decides_for_whole_requests(rule: Any) -> None:
    assert inline.answers_inline(request())
    assert not inline.answers_inline(request(line="POST /admin/reload HTTP/1.1"))
    assert not inline.answers_inline(request()[:-1])
    inline.answer_inline_when(None)
    assert not inline.answers_inline(request())  # no rule: the pool answers everything


@pytest.fixture
def holder(make_settings: Callable[..., Settings], model_path: Path,
           forests: tuple[Any, Any]) -> ModelHolder:
    settings = make_settings()
    write_model(model_path, forests[0])
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    return ModelHolder(reloader.store, reloader.counter)


def test_predictions_are_quick_while_a_compiled_model_serves_and_no_load_is_due(
        holder: ModelHolder) -> None:
    quick = quick_routes(holder)
    predictions = [RequestHead("POST", p) for p in (
        "/predict", "/predict/", "/invocations", "/v2/models/m/infer",
        "/v2/models/m/versions/2/infer")]
    assert not any(map(quick, predictions))  # nothing loaded yet: the pool loads it
    assert not quick(RequestHead("GET", "/ping"))
    assert holder.current().form == "compiled"
    assert holder.serves_compiled()
    assert all(map(quick, predictions))
    for slow in (RequestHead("POST", "/admin/reload"), RequestHead("GET", "/metrics"),
                 RequestHead("GET", "/health/"), RequestHead("GET", "/predict/"),
                 RequestHead("POST", "/v2/models/m"), RequestHead("GET", "/docs")):
        assert not quick(slow), slow
    probes = [RequestHead("GET", p) for p in ("/ping", "/v2/health/ready")]
    assert all(map(quick, probes))
    # A reload published a slot: the next request loads it, in the pool.
    holder.counter.bump(holder.counter.read() + 1)
    assert not holder.serves_compiled()
    assert not any(map(quick, predictions + probes))
    assert quick(RequestHead("GET", "/v2/health/live"))  # asks nothing of the model


def test_a_fallback_model_and_a_service_without_holder_predict_in_the_pool(
        make_settings: Callable[..., Settings], model_path: Path) -> None:
    settings = make_settings()
    write_model(model_path, ConstantModel(7))
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    fallback = ModelHolder(reloader.store, reloader.counter)
    assert fallback.current().form == "fallback"
    assert not quick_routes(fallback)(RequestHead("POST", "/predict/"))
    assert not quick_routes(fallback)(RequestHead("GET", "/ping"))
    assert not quick_routes(None)(RequestHead("POST", "/predict/"))
    assert quick_routes(None)(RequestHead("GET", "/v2/health/live"))


class _Conn:
    """The two attributes of gunicorn's TConn that the worker's answer path uses."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = None


def test_an_answer_the_socket_cannot_take_at_once_is_finished_by_a_pool_thread() -> None:
    """The main thread's answer is held and sent without waiting; what a full socket
    does not take is returned for a pool thread, which sends it in order."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    answer = b"HTTP/1.1 200 OK\r\n\r\n" + bytes(range(256)) * 2000  # ~500 kB
    worker = InlineThreadWorker.__new__(InlineThreadWorker)
    conn = _Conn(server)

    def handle(conn: Any) -> bool:
        conn.sock.sendall(answer[:19])  # gunicorn: the head, then the body
        conn.sock.sendall(answer[19:])
        return True

    worker.handle = handle  # type: ignore[method-assign]
    started = time.monotonic()
    keepalive, unsent = worker._answer(conn)
    assert time.monotonic() - started < 1, "the main thread waited for its client"
    assert conn.sock is server and keepalive is True
    assert 0 < len(unsent) < len(answer)  # the client read nothing yet
    received = bytearray(client.recv(len(answer)))
    sender = threading.Thread(target=_send_rest, args=(conn, unsent, keepalive))
    sender.start()
    while len(received) < len(answer):
        received += client.recv(65536)
    sender.join(10)
    assert bytes(received) == answer
    server.close()
    client.close()


def test_an_answer_the_socket_takes_is_sent_in_one_piece() -> None:
    server, client = socket.socketpair()
    worker = InlineThreadWorker.__new__(InlineThreadWorker)
    conn = _Conn(server)
    worker.handle = lambda conn: conn.sock.sendall(b"head\r\n\r\n") or conn.sock.sendall(
        b"body") or True  # type: ignore[method-assign]
    assert worker._answer(conn) == (True, b"")
    assert client.recv(100) == b"head\r\n\r\nbody"
    client.close()  # the client left: nothing is kept
    worker.handle = lambda conn: conn.sock.sendall(b"x" * 10) or True  # type: ignore[method-assign]
    assert worker._answer(conn) == (False, b"")  # EPIPE: nothing to send, nothing to keep
    server.close()
