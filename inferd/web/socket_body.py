"""Read a request body of known length from gunicorn's socket, in one buffer.

gunicorn's `Body.read` (gunicorn 26, gunicorn/http/body.py) asks its reader for 1 024
bytes at a time, and the reader puts the rest of each 8 kB chunk back every time; its
`LengthReader` alone gathers 8 kB chunks in a BytesIO and copies the result twice. For
10 000 rows of 30 float64 (2.4 MB, v2 binary) they took 5 ms and 1.1-2.4 ms, against
0.5 ms for `recv_into` one buffer of the body's size (a socket pair, in one process).

Here what gunicorn read past the headers comes first (its unreader's buffer), then
`recv_into` the rest; gunicorn's count of what is left of the body is kept, and bytes
past the body (a pipelined next request) are handed back, so a keep-alive connection
goes on as before. inferd does not import gunicorn: its objects are recognised by
module and attribute names, and any other input (an in-process test client, another
server or gunicorn version) gets None, for the caller's plain read.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

# A body this large or larger, read with `reuse=True`, goes into its thread's kept
# buffer: receiving 2.4 MB into fresh pages took 1.3 ms of page faults, into pages
# already faulted in 0.06 ms (a fresh buffer over glibc's mmap threshold, pinned at
# 128 kB by inferd.server.preload, is always fresh pages). Up to `REUSE_MAX` a thread
# keeps its largest such buffer (so a worker holds at most threads x REUSE_MAX for
# it); beyond, a fresh one.
REUSE_MIN = 256 << 10
REUSE_MAX = 4 << 20

_kept = threading.local()


def read_exactly(stream: Any, length: int,
                 reuse: bool = False) -> bytes | bytearray | memoryview | None:
    """`length` bytes of the body (the buffer they were received in: copying 2.4 MB
    into a `bytes` took another 1.2 ms, most of it faulting in fresh pages), fewer if
    the client stopped sending (or its read side was shut down at a deadline); None
    when `stream` is not gunicorn's untouched body of that length.

    `reuse`: the caller is done with the body, and with every view of it, before
    this thread reads its next one: a body of `REUSE_MIN` to `REUSE_MAX` bytes then
    comes as a view of the thread's kept buffer, which the next read overwrites."""
    reader: Any = getattr(stream, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    sock = getattr(unreader, "sock", None)
    if (type(stream).__module__ != "gunicorn.http.body"
            or type(reader).__name__ != "LengthReader"
            or getattr(reader, "length", None) != length or stream.buf.tell()
            or not isinstance(sock, socket.socket) or length <= 0):
        return None
    first = unreader.read()  # read with the headers, else one chunk from the socket
    if len(first) >= length:
        # PERF: a small body (a few rows) came whole in that chunk: no buffer to fill.
        if len(first) > length:
            unreader.unread(first[length:])
        reader.length -= length
        return first if len(first) == length else first[:length]
    body, view = _buffer(length, reuse)
    got = len(first)
    view[:got] = first
    while got < length:
        received = sock.recv_into(view[got:])
        if not received:
            break
        got += received
    reader.length -= got
    return body if got == length else bytes(view[:got])


def _buffer(length: int, reuse: bool) -> tuple[bytearray | memoryview, memoryview]:
    """The buffer to receive `length` bytes into, and a writable view of it."""
    if not reuse or not REUSE_MIN <= length <= REUSE_MAX:
        fresh = bytearray(length)
        return fresh, memoryview(fresh)
    kept: bytearray | None = getattr(_kept, "buffer", None)
    if kept is None or len(kept) < length:
        kept = _kept.buffer = bytearray(length)
    view = memoryview(kept)[:length]
    return view, view
