"""Bound the time a client may take to send a request's headers (gunicorn hooks).

gunicorn's gthread worker hands a connection to a thread once its first byte has
come, and that thread then reads the headers from a blocking socket with no time
limit (gunicorn 26, `gunicorn/workers/gthread.py`, `ThreadWorker.handle`: after
`wait_for_data`, `conn.sock.setblocking(True)` then `next(conn.parser)`). gunicorn has
no hook between the two, so `bound_header_reads` wraps the worker's `handle` method
(an instance attribute: the thread pool looks `self.handle` up at each submit) to arm
a read deadline (`inferd.common.read_deadline`) first; `headers_read`, from
`pre_request`, disarms it once the headers are parsed. The body's deadline is armed
by `inferd.web.body.read_body`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from inferd.common.read_deadline import DEADLINES
from inferd.common.settings import Settings


def bound_header_reads(worker: Any, settings: Settings) -> None:
    """In a worker, after its init and before its main loop (`post_worker_init`):
    start the process's read watchdog and wrap `worker.handle`."""
    DEADLINES.start(settings.read_timeout)
    handle: Callable[..., Any] = worker.handle

    @functools.wraps(handle)
    def handle_within_deadline(conn: Any, *args: Any) -> Any:
        DEADLINES.arm(getattr(conn, "sock", None), "headers")
        try:
            return handle(conn, *args)
        finally:
            DEADLINES.disarm()  # a keep-alive connection's next request re-arms

    worker.handle = handle_within_deadline


def headers_read() -> None:
    """`pre_request`, in the thread that parsed them: the headers are in; what follows
    (the application, which reads the body under a deadline of its own) is not bounded
    here."""
    DEADLINES.disarm()
