"""Reading a body straight from gunicorn's socket: with gunicorn's own Body, reader
and unreader over a real socket pair."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from inferd.web import socket_body
from inferd.web.socket_body import read_exactly


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    with client, server:
        yield client, server


def _body(server: socket.socket, length: int, buffered: bytes = b"") -> Body:
    unreader = SocketUnreader(server)
    unreader.unread(buffered)  # what gunicorn read past the headers
    return Body(LengthReader(unreader, length))


def test_a_large_body_arrives_whole_after_what_was_buffered(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    payload = bytes(range(256)) * 10_000
    sender = threading.Thread(target=client.sendall, args=(payload[1000:],))
    sender.start()
    body = _body(server, len(payload), buffered=payload[:1000])
    assert read_exactly(body, len(payload)) == payload
    sender.join(10)
    assert body.reader.length == 0
    assert body.read() == b""  # gunicorn finds nothing left of the body


def test_a_pipelined_next_request_is_left_for_gunicorn(
        pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    body = _body(server, 5, buffered=b"hello" + b"GET /next HTTP/1.1\r\n")
    assert read_exactly(body, 5) == b"hello"
    assert body.reader.unreader.read() == b"GET /next HTTP/1.1\r\n"


def test_a_small_body_read_with_the_headers_is_taken_as_it_is(
        pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    body = _body(server, 5, buffered=b"hello")
    assert read_exactly(body, 5) == b"hello"
    assert body.reader.length == 0
    assert body.read() == b""


def test_a_client_that_stops_early_gives_what_it_sent(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    client.sendall(b"abc")
    client.shutdown(socket.SHUT_WR)
    assert read_exactly(_body(server, 10), 10) == b"abc"


def test_other_inputs_are_left_to_the_plain_read(
        pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    assert read_exactly(io.BytesIO(b"abc"), 3) is None  # an in-process client
    assert read_exactly(_body(server, 3, buffered=b"abc"), 4) is None  # another length
    started = _body(server, 6, buffered=b"abcdef")
    assert started.read(2) == b"ab"
    assert read_exactly(started, 6) is None  # partly read already


def _received(server: socket.socket, client: socket.socket, payload: bytes,
              reuse: bool) -> bytes | bytearray | memoryview | None:
    sender = threading.Thread(target=client.sendall, args=(payload,))
    sender.start()
    body = read_exactly(_body(server, len(payload)), len(payload), reuse)
    sender.join(10)
    return body


def test_a_large_body_read_for_reuse_comes_in_the_threads_kept_buffer(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    first = bytes([1]) * socket_body.REUSE_MIN
    second = bytes([2]) * (socket_body.REUSE_MIN + 7)
    got = _received(server, client, first, reuse=True)
    assert isinstance(got, memoryview) and got == first
    kept = got.obj
    got = _received(server, client, second, reuse=True)  # larger: a new kept buffer
    assert isinstance(got, memoryview) and got == second and got.obj is not kept
    kept = got.obj
    got = _received(server, client, first, reuse=True)  # the same pages, overwritten
    assert isinstance(got, memoryview) and got == first and got.obj is kept

    elsewhere: list[object] = []
    other = threading.Thread(target=lambda: elsewhere.append(
        _received(server, client, second, reuse=True)))
    other.start()
    other.join(30)
    assert elsewhere and elsewhere[0] == second
    assert elsewhere[0].obj is not kept  # type: ignore[union-attr]  # its own buffer


def test_only_bodies_in_the_reuse_range_and_asked_for_it_share_a_buffer(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    for size, reuse in ((socket_body.REUSE_MIN, False), (socket_body.REUSE_MIN - 1, True),
                        (socket_body.REUSE_MAX + 1, True)):
        payload = bytes([3]) * size
        got = _received(server, client, payload, reuse)
        assert isinstance(got, bytearray) and got == payload  # a fresh buffer of its own
