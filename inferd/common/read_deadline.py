"""A deadline on reading a request, enforced from outside the reading thread.

Why: gunicorn's gthread worker waits up to 5 s for a connection's first byte without
holding a thread, but once a byte came it reads the headers (and the application
reads the body) on a blocking socket with no time limit. A client that sends one
byte a second then holds a worker thread for as long as it likes, and a handful of
them hold every thread of every worker: `/predict/` stops answering.

How: the thread about to read `arm`s a deadline for its socket; the one watchdog
thread of the process (`start`) wakes a few times a second and, for every socket
still armed past its deadline, shuts down the socket's read side
(`shutdown(SHUT_RD)`). A blocked `recv` then returns end-of-file at once, so the
reader stops: gunicorn drops a connection whose headers did not complete, and
`inferd.web.body.read_body` answers 408 to a body that did not. Writing still works,
so the 408 can reach the client. `disarm` ends the watch; it says whether the
deadline had passed.

Armed twice for each request, in the worker process (one `ReadDeadlines` a process,
`DEADLINES`, shared by its threads; each thread has at most one deadline at a time):

- headers: from the moment a worker thread takes up a connection (gunicorn's
  `handle`, wrapped by `inferd.server.slow_clients`) to gunicorn's `pre_request`;
- body: around the body read of `read_body`.

Nothing is armed outside gunicorn (a test's in-process client has no socket), and the
watchdog thread starts only in a gunicorn worker.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("inferd.read_deadline")

SWEEP_SECONDS = 0.25


@dataclass
class _Watch:
    sock: socket.socket
    deadline: float
    what: str
    expired: bool = False


class ReadDeadlines:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ident: Callable[[], int] = threading.get_ident) -> None:
        self.clock = clock
        self.ident = ident
        self._watches: dict[int, _Watch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # None until `start`: outside a gunicorn worker, arming does nothing.
        self.seconds: float | None = None

    def arm(self, sock: object, what: str) -> None:
        """Watch `sock` for the calling thread: `seconds` from now, its read side is
        shut down. Replaces the thread's earlier deadline, if any. A no-op before
        `start`, or when `sock` is not a socket."""
        if self.seconds is None or not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._watches[self.ident()] = _Watch(sock, self.clock() + self.seconds, what)

    def disarm(self) -> bool:
        """End the calling thread's watch; True if its deadline had passed (the socket's
        read side is shut down, so what was read is all there will be)."""
        with self._lock:
            watch = self._watches.pop(self.ident(), None)
        return watch is not None and watch.expired

    def sweep(self) -> int:
        """Shut down the read side of every socket past its deadline; how many."""
        now = self.clock()
        with self._lock:
            overdue = [w for w in self._watches.values() if not w.expired and w.deadline <= now]
            for watch in overdue:
                watch.expired = True
        for watch in overdue:
            _shut_reading(watch)
        return len(overdue)

    def start(self, seconds: float) -> ReadDeadlines:
        """Give every later deadline `seconds` and start the watchdog thread (in a
        gunicorn worker, after the fork; INFERD_READ_TIMEOUT)."""
        self.seconds = seconds
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inferd-read-deadline",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:  # the watchdog must outlive a bug in one sweep
                log.exception("Read deadline sweep failed", extra={"event": "read_deadline"})


def _shut_reading(watch: _Watch) -> None:
    try:
        peer = watch.sock.getpeername()
    except OSError:
        peer = None
    log.warning(
        "Client too slow: the request's %s did not arrive in time; closing the read side",
        watch.what, extra={"event": "slow_client", "phase": watch.what, "peer": str(peer)})
    try:
        watch.sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # already closed by the client or by gunicorn


# The worker process's watchdog: armed by the gunicorn hooks and by read_body.
DEADLINES = ReadDeadlines()
