"""The shared generation counter: one small file that every worker memory-maps.

Workers read it before each request, so the read must cost a few hundred
nanoseconds: an `unpack_from` on a mapping, no `stat`, no `read` system call.

File format (16 bytes, little-endian)::

    offset 0  8 bytes  magic b"INFDGEN" + format version byte 0x01
    offset 8  8 bytes  uint64 generation, only ever grows

A file of another size or with another magic raises CorruptStateError on open,
rather than being read as generation 0.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from inferd.common.errors import CorruptStateError

MAGIC = b"INFDGEN\x01"
SIZE = 16
_VALUE = struct.Struct("<Q")


def create(path: Path, value: int = 0) -> None:
    """Create the counter file if it does not exist (atomically: temp file + rename)."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + _VALUE.pack(value))
        fh.flush()
        os.fsync(fh.fileno())
    # link() instead of rename(): if another process created it meanwhile, keep theirs.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class GenerationCounter:
    """A read-mostly view of the counter file, shared by all processes through mmap.

    Writers (the process holding the reload lock) call `bump`; everyone else calls
    `read`. One writer at a time is guaranteed by the reload lock, not by this class.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size != SIZE:
                raise CorruptStateError(
                    f"generation file {path} is {size} bytes, expected {SIZE}; "
                    "it was not written by inferd or was truncated (delete it and restart "
                    "to rebuild it from the slots)"
                )
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        if self._map[:8] != MAGIC:
            magic = bytes(self._map[:8])
            self._map.close()
            raise CorruptStateError(
                f"generation file {path} starts with {magic!r}, expected {MAGIC!r}; "
                "delete it and restart to rebuild it from the slots"
            )

    def read(self) -> int:
        # The writer replaces 8 bytes with one slice assignment; reading twice until
        # both agree rules out a torn value should that copy not be a single store.
        while True:
            first = _VALUE.unpack_from(self._map, 8)[0]
            if _VALUE.unpack_from(self._map, 8)[0] == first:
                return first

    def bump(self, to: int) -> None:
        """Raise the counter to `to`. Lowering it is refused: generation only grows."""
        now = self.read()
        if to < now:
            raise CorruptStateError(f"refusing to lower generation from {now} to {to}")
        self._map[8:16] = _VALUE.pack(to)
        self._map.flush()

    def close(self) -> None:
        self._map.close()
