"""Read a request body with the limits every protocol shares: its size
(INFERD_MAX_BODY_BYTES) and the time the client may take to send it
(INFERD_READ_TIMEOUT, enforced by `inferd.common.read_deadline`)."""

from __future__ import annotations

from typing import Literal, overload

import falcon

from inferd.common.errors import PayloadTooLargeError, RequestTimeoutError
from inferd.common.read_deadline import DEADLINES
from inferd.web.socket_body import read_exactly


@overload
def read_body(req: falcon.Request, max_bytes: int,
              reuse: Literal[False] = False) -> bytes | bytearray: ...


@overload
def read_body(req: falcon.Request, max_bytes: int,
              reuse: Literal[True]) -> bytes | bytearray | memoryview: ...


def read_body(req: falcon.Request, max_bytes: int,
              reuse: bool = False) -> bytes | bytearray | memoryview:
    """The whole body (bytes-like), or PayloadTooLargeError before reading more than
    `max_bytes` + 1, or RequestTimeoutError when the client did not send it in time.
    `reuse`: a large body may come in the thread's kept buffer, which the thread's
    next request overwrites (`socket_body.read_exactly`)."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(
            f"request body is {length} bytes, the limit is {max_bytes} (INFERD_MAX_BODY_BYTES)"
        )
    # A chunked body has no Content-Length, and falcon's bounded_stream then reads
    # nothing; gunicorn marks such input as terminated, so the raw stream is safe to
    # read to its end (still capped at max_bytes + 1).
    chunked = length is None and req.env.get("wsgi.input_terminated")
    # gunicorn reads the body from a blocking socket with no time limit of its own:
    # the watchdog ends the read at the deadline (gunicorn puts its socket in the
    # environ; an in-process test client has none, and then nothing is armed).
    DEADLINES.arm(req.env.get("gunicorn.socket"), "body")
    try:
        body = None if length is None else read_exactly(req.env.get("wsgi.input"), length,
                                                        reuse)
        if body is None:
            body = (req.stream if chunked else req.bounded_stream).read(max_bytes + 1)
    except OSError as exc:
        if DEADLINES.disarm():
            raise _too_slow() from exc
        raise
    if DEADLINES.disarm():
        raise _too_slow()
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"request body is larger than the limit of {max_bytes} bytes "
            "(INFERD_MAX_BODY_BYTES)"
        )
    return body


def _too_slow() -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request body did not arrive within {DEADLINES.seconds:g}s "
        "(INFERD_READ_TIMEOUT)")
