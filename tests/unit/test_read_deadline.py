"""The read watchdog on real sockets, with a fake clock: a socket past its deadline
has its read side shut down, so a blocked reader gets end-of-file."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from inferd.common.read_deadline import ReadDeadlines
from tests.fakes import ManualClock

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def deadlines(clock: ManualClock) -> ReadDeadlines:
    armed = ReadDeadlines(clock=clock)
    armed.seconds = 2.0  # what `start` sets, without its thread: the tests sweep
    return armed


@pytest.fixture
def pair() -> Iterator[Pair]:
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def test_a_socket_past_its_deadline_reads_end_of_file(
        clock: ManualClock, deadlines: ReadDeadlines, pair: Pair) -> None:
    server, client = pair
    deadlines.arm(server, "body")
    client.sendall(b"x")
    clock.advance(1.9)
    assert deadlines.sweep() == 0
    assert server.recv(10) == b"x"

    clock.advance(0.2)
    assert deadlines.sweep() == 1
    assert server.recv(10) == b"", "a reader after the deadline sees end-of-file"
    assert deadlines.sweep() == 0, "shut down once"
    assert deadlines.disarm() is True
    server.sendall(b"408")  # the answer can still go out
    assert client.recv(10) == b"408"


def test_disarmed_in_time_is_left_alone(
        clock: ManualClock, deadlines: ReadDeadlines, pair: Pair) -> None:
    server, client = pair
    deadlines.arm(server, "headers")
    assert deadlines.disarm() is False
    clock.advance(10)
    assert deadlines.sweep() == 0
    client.sendall(b"next request")
    assert server.recv(20) == b"next request"


def test_nothing_is_armed_before_start_or_without_a_socket(clock: ManualClock,
                                                           pair: Pair) -> None:
    deadlines = ReadDeadlines(clock=clock)
    deadlines.arm(pair[0], "body")  # not started: no deadline configured
    deadlines.seconds = 1.0
    deadlines.arm(None, "body")  # an in-process test client has no socket
    clock.advance(5)
    assert deadlines.sweep() == 0
    assert deadlines.disarm() is False
