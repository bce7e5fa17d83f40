"""Which requests a worker answers on its main thread (`inferd.server.worker`).

gunicorn's gthread worker hands every request on a kept-alive connection from its main
thread to a pool thread and the connection back again: two thread switches and half a
dozen system calls, about a third of the CPU a one-row prediction costs the worker.
For a request that is already whole in the socket's receive buffer, small, and routed
to a handler that answers in microseconds, the main thread answers it itself.

Whole: reading it cannot block the main thread. Judged here from the bytes peeked at,
conservatively: anything this reader is not sure of (a chunked or `Expect` body, an
upgrade, a folded header line, two lengths) goes to the pool, where gunicorn reads and
judges it as before. A wrong judgement costs where a request runs, never its answer:
gunicorn's own parser still reads every request.

Quick: the application says which routes (`answer_inline_when`); a process whose
application registered nothing answers every request in the pool, as gthread does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# Larger requests go to the pool: their bodies take long enough to decode and predict
# that the switch no longer matters, and they may not have arrived whole.
MAX_INLINE_BYTES = 16384

_HEAD_END = b"\r\n\r\n"
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
# Headers whose requests the pool reads: bodies of unknown length, a body the client
# waits to be asked for, a protocol switch.
_POOL_HEADERS = (b"transfer-encoding", b"expect", b"upgrade")


class RequestHead(NamedTuple):
    method: str
    path: str


QuickRoute = Callable[[RequestHead], bool]

_quick_route: QuickRoute | None = None


def answer_inline_when(quick_route: QuickRoute | None) -> None:
    """The application's rule: True for a request its route answers in microseconds.
    Called by the application while it is built (None: answer nothing inline)."""
    global _quick_route
    _quick_route = quick_route


def answers_inline(peeked: bytes) -> bool:
    """Whether the request at the start of `peeked` may be answered on the main thread:
    it is whole in `peeked` and the application's rule takes it."""
    rule = _quick_route
    if rule is None:
        return False
    head = whole_request(peeked)
    return head is not None and rule(head)


def whole_request(peeked: bytes) -> RequestHead | None:
    """The method and path of the request at the start of `peeked` when its head and
    its `Content-Length` body are all in `peeked`; None when not, or not sure."""
    end = peeked.find(_HEAD_END, 0, MAX_INLINE_BYTES)
    if end < 0:
        return None
    lines = peeked[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in _VERSIONS:
        return None
    method, target = parts[0], parts[1]
    length: int | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[:1] in b" \t" or name[-1:] in b" \t":
            return None
        name = name.lower()
        if name in _POOL_HEADERS:
            return None
        if name == b"content-length":
            value = value.strip(b" \t")
            if length is not None or not value.isdigit():
                return None
            length = int(value)
    if end + len(_HEAD_END) + (length or 0) > min(len(peeked), MAX_INLINE_BYTES):
        return None
    if not method.isalpha() or not target.startswith(b"/") or not target.isascii():
        return None
    path = target.split(b"?", 1)[0]
    return RequestHead(method.decode("ascii"), path.decode("ascii"))
