"""inferd's gunicorn worker: gthread, answering quick requests on its main thread.

gunicorn's gthread worker (gunicorn 26, `gunicorn/workers/gthread.py`) waits for its
kept-alive connections in its main loop; when one becomes readable it takes it out of
the loop, submits it to the thread pool, and the pool thread, once it has answered,
queues it back to the main thread (a pipe write) to be put back in the loop. This
worker answers such a request on the main thread instead when `inferd.server.inline`
says it may (whole, small, a quick route): the connection stays in the loop, and the
request costs no thread switch. Everything else (a new connection's first request, a
large or partly received body, a slow route, TLS) goes to the pool as in gthread.

The main thread must never wait on a client, since it also answers gunicorn's heartbeat
and every other connection of the worker:

- reading: the request is whole in the socket before it starts (peeked at);
- writing: what gunicorn writes for it is held in memory (`_HeldSends`) and sent in
  one non-blocking call; if the client's window does not take it all, a pool thread
  sends the rest, blocking as gthread's threads always do, and the connection carries
  on from the pool. One send a response instead of gunicorn's two (head, then body).

Measured side by side in `python -m benchmarks.worker_class` and the suite
(docs/performance.md, "Worker class").
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from inferd.server import inline

_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT


class InlineThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        # Read once: gunicorn's settings are looked up by name on every access.
        self._may_inline = not self.cfg.is_ssl  # TLS: the socket holds ciphertext
        super().init_process()  # runs the worker's loop until it exits

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        if not self._may_answer_inline(conn):
            super().on_client_socket_readable(conn, client)
            return
        # Out of the keep-alive queue while it is answered, as a pool thread's would
        # be: gunicorn's limit on kept-alive connections counts the others.
        self.keepalived_conns.remove(conn)
        try:
            keepalive, unsent = self._answer(conn)
        except Exception:  # gunicorn's `handle` answers the request's own errors
            self.log.exception("Error answering a request on the main thread")
            keepalive, unsent = False, b""
        if keepalive is True and not unsent and self.alive and not _read_ahead(conn):
            conn.sock.setblocking(False)
            conn.set_timeout()
            self.keepalived_conns.append(conn)  # still registered in the loop
            return
        self.poller.unregister(client)
        if unsent:
            # The client's window did not take the whole answer: a pool thread sends the
            # rest, then `finish_request` keeps or closes the connection as it says.
            future = self.tpool.submit(_send_rest, conn, unsent, keepalive)
            future.add_done_callback(
                lambda done: self.method_queue.defer(self.finish_request, conn, done))
        elif keepalive is True and self.alive:
            # The client pipelined its next request behind this one, and the parser
            # has read some of it: the loop would not see it, the pool answers it.
            self.enqueue_req(conn)
        else:
            self.nr_conns -= 1
            with contextlib.suppress(OSError):  # gunicorn may have closed it already
                conn.close(graceful=True)

    def finish_request(self, conn: Any, fs: Any) -> None:
        # gthread puts a kept-alive connection back in its loop, which waits for the
        # socket to turn readable: requests the client pipelined behind the one just
        # answered, already read into the parser, would never be seen (the connection
        # closes after the keep-alive timeout). They are answered first.
        if (self.alive and not fs.cancelled() and fs.exception() is None
                and fs.result() is True and _read_ahead(conn)):
            self.enqueue_req(conn)
            return
        super().finish_request(conn, fs)

    def _may_answer_inline(self, conn: Any) -> bool:
        if not self._may_inline or conn.is_http2 or conn.parser is None:
            return False
        try:
            return inline.answers_inline(conn.sock.recv(inline.MAX_INLINE_BYTES, _PEEK_FLAGS))
        except OSError:
            return False  # the pool meets the error and closes the connection

    def _answer(self, conn: Any) -> tuple[Any, bytes | memoryview]:
        """gthread's `handle` on this thread, its writes held and then sent without
        waiting: whether to keep the connection, and what the socket did not take."""
        sock = conn.sock
        held = _HeldSends(sock)
        conn.sock = held
        try:
            keepalive = self.handle(conn)
        finally:
            conn.sock = sock
        if not held.data:
            return keepalive, b""
        try:
            sent = sock.send(held.data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False, b""  # the client has gone: nothing to send it, nothing to keep
        return keepalive, memoryview(held.data)[sent:]


class _HeldSends:
    """A connection's socket while the main thread answers on it: gunicorn's writes
    (`sendall`, `send`) are kept in `data`; everything else is the socket's. Quick
    routes answer with bytes, never a file (gunicorn would `sendfile` to the socket's
    descriptor directly, past what is held)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _send_rest(conn: Any, unsent: bytes | memoryview, keepalive: Any) -> Any:
    """In a pool thread: the rest of an answer the main thread began; then, as gthread's
    `handle` returns, whether to keep the connection."""
    conn.sock.setblocking(True)
    conn.sock.sendall(unsent)
    return keepalive


def _read_ahead(conn: Any) -> bool:
    """Whether gunicorn's parser holds bytes of the connection's next request."""
    if conn.parser is None:
        return False
    with conn.parser.unreader.buf.getbuffer() as buffered:
        return buffered.nbytes > 0
