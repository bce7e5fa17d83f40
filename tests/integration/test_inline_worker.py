"""inferd's gunicorn worker answers quick requests on its main thread
(inferd/server/worker.py), under real gunicorn: one worker whose thread pool has one
thread, real sockets.

- While a slow client holds the pool's only thread, a kept-alive connection's
  predictions (and their 400s) still answer at once: the main thread answers them.
- Everything the main thread must not answer still answers, from the pool: requests
  pipelined behind another, a body that arrives in two parts, a body over the inline
  limit, a route that is not quick (/metrics), `Connection: close`.
- A client that sends requests with large answers and reads none holds at most the
  pool's thread (which finishes the answer the socket would not take), never the main
  thread; once it reads, it gets every answer, whole and in order.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import orjson
import pytest

from tests.integration.servers import IRIS_ROWS, InferdServer, module_server

pytestmark = pytest.mark.integration

READ_TIMEOUT = 6.0
# Far below READ_TIMEOUT: an answer that waited for the held pool thread would take it.
PROMPT_SECONDS = 1.5


server = module_server("inline", workers=1, INFERD_THREADS="1",
                       INFERD_READ_TIMEOUT=str(READ_TIMEOUT))


class Connection:
    """One kept-alive HTTP/1.1 connection, written and read by hand so that a test
    chooses how the bytes arrive."""

    def __init__(self, server: InferdServer, receive_buffer: int | None = None) -> None:
        port = urlsplit(server.url).port
        assert port is not None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: it sets the window offered
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(READ_TIMEOUT * 3)
        self.sock.connect(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status = self.reader.readline()
        assert status.startswith(b"HTTP/1.1 "), status
        headers = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.reader.read(int(headers.get("content-length", "0")))
        return int(status.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.reader.read(1) == b""


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


PREDICT = post("/predict/", orjson.dumps({"features": IRIS_ROWS}))


def predictions(answer: tuple[int, dict[str, str], bytes]) -> list[object]:
    status, _, body = answer
    assert status == 200, body
    return list(orjson.loads(body)["predictions"])


@pytest.fixture
def expected(server: InferdServer) -> list[object]:
    return list(server.predict().json()["predictions"])


class HeldPoolThread:
    """A client that sends a request's head and half its body, then waits: the worker's
    pool thread reading that body is held until the read deadline cuts it off."""

    def __init__(self, server: InferdServer) -> None:
        self.conn = Connection(server)
        body = orjson.dumps({"features": IRIS_ROWS})
        self.conn.send(post("/predict/", body)[:-len(body) // 2])
        time.sleep(0.3)  # the pool's thread takes it and waits for the rest

    def released(self) -> int:
        status, _, _ = self.conn.answer()  # the read deadline's 408
        self.conn.close()
        return status


def test_kept_alive_predictions_answer_while_the_pool_thread_is_held(
        server: InferdServer, expected: list[object]) -> None:
    client = Connection(server)
    try:
        client.send(PREDICT)  # a new connection's first request: the pool answers it
        assert predictions(client.answer()) == expected
        held = HeldPoolThread(server)
        for _ in range(20):
            started = time.monotonic()
            client.send(PREDICT)
            assert predictions(client.answer()) == expected
            assert time.monotonic() - started < PROMPT_SECONDS
        v2 = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
                          "data": [x for row in IRIS_ROWS for x in row]}]}
        client.send(post("/v2/models/iris-model/infer", orjson.dumps(v2)))
        status, _, body = client.answer()
        assert status == 200 and orjson.loads(body)["outputs"][0]["data"] == expected
        client.send(post("/predict/", b'{"features": [[1, 2]'))
        status, _, body = client.answer()
        assert status == 400 and "detail" in orjson.loads(body)
        assert time.monotonic() - started < 3 * PROMPT_SECONDS
        # Not quick: /metrics waits for the pool's thread, and answers once it is free.
        client.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.released() == 408
        status, _, body = client.answer()
        assert status == 200 and b"ml_request_count_total" in body
        client.send(PREDICT)
        assert predictions(client.answer()) == expected
    finally:
        client.close()


def test_requests_the_main_thread_leaves_to_the_pool_all_answer(
        server: InferdServer, expected: list[object]) -> None:
    client = Connection(server)
    try:
        client.send(PREDICT)
        assert predictions(client.answer()) == expected
        # Three requests in one write: the parser reads past the first.
        client.send(PREDICT * 3)
        assert [predictions(client.answer()) for _ in range(3)] == [expected] * 3
        # A body in two parts: not whole when the connection turns readable.
        client.send(PREDICT[:-10])
        time.sleep(0.2)
        client.send(PREDICT[-10:])
        assert predictions(client.answer()) == expected
        # Over the inline limit (16 kB).
        many = IRIS_ROWS * 400
        client.send(post("/predict/", orjson.dumps({"features": many})))
        assert predictions(client.answer()) == expected * 400
        client.send(post("/predict/", orjson.dumps({"features": IRIS_ROWS}),
                         "Connection: close"))
        assert predictions(client.answer()) == expected
        assert client.closed_by_server()
    finally:
        client.close()


def test_a_client_that_reads_no_answer_holds_the_pool_thread_not_the_main_one(
        server: InferdServer, expected: list[object]) -> None:
    rows = IRIS_ROWS * 260  # 14 kB of body, inline; tens of kB of probabilities back
    proba = post("/predict/", orjson.dumps({"features": rows, "output": "predict_proba"}))
    assert len(proba) < 16384
    client, stuck = Connection(server), Connection(server, receive_buffer=4096)
    sent: list[int] = []

    def send_without_reading(count: int) -> None:
        for i in range(count):
            stuck.send(proba)  # blocks once every buffer on the way is full
            sent.append(i)

    try:
        client.send(PREDICT)
        assert predictions(client.answer()) == expected
        stuck.send(proba)
        status, _, first = stuck.answer()
        assert status == 200 and len(orjson.loads(first)["predictions"]) == len(rows)
        # More answers than the socket buffers hold (the kernel grows a send buffer up
        # to 4 MB, net.ipv4.tcp_wmem), and requests behind them.
        unread = 8 * 2**20 // len(first) + 1
        sender = threading.Thread(target=send_without_reading, args=(unread,), daemon=True)
        sender.start()
        deadline = time.monotonic() + 30
        while not _stalled(sent):
            assert time.monotonic() < deadline, "the client's sends never stalled"
        assert sender.is_alive(), "every request was taken: the buffers never filled"
        for _ in range(10):
            started = time.monotonic()
            client.send(PREDICT)
            assert predictions(client.answer()) == expected
            assert time.monotonic() - started < PROMPT_SECONDS
        answers = [stuck.answer() for _ in range(unread)]
        assert [(status, body) for status, _, body in answers] == [(200, first)] * unread
        sender.join(READ_TIMEOUT)
        assert len(sent) == unread
        client.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = client.answer()
        assert status == 200
    finally:
        client.close()
        stuck.close()


def _stalled(sent: list[int], seconds: float = 0.5) -> bool:
    """Whether no request was sent for `seconds`."""
    before = len(sent)
    time.sleep(seconds)
    return len(sent) == before
