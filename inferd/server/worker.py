"""inferd's gunicorn worker: gthread, answering quick requests on its main thread.

gunicorn's gthread worker (gunicorn 26, `gunicorn/workers/gthread.py`) waits for its
kept-alive connections in its main loop; when one becomes readable it takes it out of
the loop, submits it to the thread pool, and the pool thread, once it has answered,
queues it back to the main thread (a pipe write) to be put back in the loop. This
worker answers such a request on the main thread instead when `inferd.server.inline`
says it may (whole, small, a quick route): the connection stays in the loop, and the
request costs no thread switch. Everything else (a new connection's first request, a
large or partly received body, a slow route, TLS) goes to the pool as in gthread.

Measured on a one-row prediction, 2 workers, 8 connections (`python -m
benchmarks.worker_class`): the floor's server CPU a request 230 -> 170 us.

The main thread still answers gunicorn's heartbeat between requests: an inline request
is one that answers in microseconds, and it cannot wait on the client, since it is
already whole in the socket and the socket's send queue is empty before it starts (so
its answer, a few kB, goes into the kernel's buffer without waiting for the client to
read).
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from inferd.server import inline

_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT
_INT = struct.Struct("i")


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
        keepalive = self.handle(conn)
        if keepalive is True and self.alive and not _read_ahead(conn):
            conn.sock.setblocking(False)
            conn.set_timeout()
            self.keepalived_conns.append(conn)  # still registered in the loop
            return
        self.poller.unregister(client)
        if keepalive is True and self.alive:
            # The client pipelined its next request behind this one, and the parser
            # has read some of it: the loop would not see it, the pool answers it.
            self.enqueue_req(conn)
        else:
            self.nr_conns -= 1
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
            peeked = conn.sock.recv(inline.MAX_INLINE_BYTES, _PEEK_FLAGS)
            return inline.answers_inline(peeked) and _unsent_bytes(conn.sock) == 0
        except OSError:
            return False  # the pool meets the error and closes the connection


def _read_ahead(conn: Any) -> bool:
    """Whether gunicorn's parser holds bytes of the connection's next request."""
    buffered = conn.parser.unreader.buf
    return bool(buffered.seek(0, 2))


def _unsent_bytes(sock: socket.socket) -> int:
    """Bytes of earlier answers still in the socket's send queue (Linux SIOCOUTQ)."""
    queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(_INT.unpack(queued)[0])
