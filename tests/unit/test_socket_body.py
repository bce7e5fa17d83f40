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
