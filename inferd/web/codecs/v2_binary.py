"""The binary tensor data extension of the Open Inference Protocol (Triton's
`binary_tensor_data`, what `tritonclient` sends and asks for by default).

A body is a JSON header followed by raw tensors, with no separator:

    <JSON header: Inference-Header-Content-Length bytes><tensor 1 bytes><tensor 2 bytes>...

Each tensor sent this way has `"parameters": {"binary_data_size": N}` in the header
instead of `"data"`, and its N bytes follow the header in the order of the tensors that
have one. Fixed-size datatypes are their elements in row-major order, little-endian,
one byte a BOOL; BYTES is each element as a 4-byte little-endian length and then its
bytes. Responses use the same framing with the same header.

Decoding is `numpy.frombuffer` on the received bytes: a 10 000 x 30 float tensor is
one copy, with no JSON number parsing at all.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from inferd.common.errors import BadRequestError
from inferd.model.tensors import NUMPY_DTYPES

HEADER = "Inference-Header-Content-Length"
MEDIA = "application/octet-stream"


def split(body: bytes | bytearray | memoryview,
          header_length: str | None) -> tuple[bytes | bytearray | memoryview, memoryview]:
    """The JSON header and the binary tail of a request body. Without the header
    (`header_length` None) the whole body is JSON."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequestError(
            f"{HEADER} is {header_length[:40]!r}, expected the JSON header's length in bytes"
        ) from None
    if not 0 < length <= len(body):
        raise BadRequestError(
            f"{HEADER} is {length}, but the body has {len(body)} bytes; it must be the "
            "length of the JSON that starts the body"
        )
    return body[:length], memoryview(body)[length:]


class Tail:
    """The binary tensors after the JSON header, taken in order."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: Any, name: str) -> memoryview:
        if type(size) is not int or size < 0:
            raise BadRequestError(
                f"input {name!r}: binary_data_size must be a non-negative integer")
        end = self.offset + size
        if end > len(self.data):
            raise BadRequestError(
                f"input {name!r} declares {size} bytes of binary data, but only "
                f"{len(self.data) - self.offset} bytes follow the JSON header")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def check_consumed(self) -> None:
        if self.offset != len(self.data):
            raise BadRequestError(
                f"{len(self.data) - self.offset} bytes follow the JSON header and the "
                "binary inputs it declares; binary_data_size and the body disagree")


def to_array(raw: memoryview, datatype: str, count: int, name: str) -> np.ndarray:
    """`count` elements of `datatype` from `raw` (a flat array; BYTES gives strings)."""
    if datatype == "BYTES":
        return _strings(raw, count, name)
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadRequestError(
            f"input {name!r}: {len(raw)} bytes of binary data, expected {count} "
            f"{datatype} elements of {dtype.itemsize} bytes = {count * dtype.itemsize}")
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise BadRequestError(f"input {name!r}: a BOOL element is a byte of 0 or 1")
    return array


def _strings(raw: memoryview, count: int, name: str) -> np.ndarray:
    out = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise BadRequestError(f"input {name!r}: BYTES data ends inside an element")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequestError(f"input {name!r}: BYTES data ends inside an element")
        try:
            out.append(bytes(raw[offset:offset + length]).decode())
        except UnicodeDecodeError:
            raise BadRequestError(f"input {name!r}: a BYTES element is not UTF-8") from None
        offset += length
    if offset != len(raw):
        raise BadRequestError(
            f"input {name!r}: {len(raw) - offset} bytes left after {count} BYTES elements")
    return np.array(out, dtype=object)


def to_bytes(values: Any, datatype: str) -> bytes:
    """A tensor's elements as the extension sends them (row-major, little-endian)."""
    if datatype == "BYTES":
        parts = []
        for value in np.asarray(values, dtype=object).ravel():
            encoded = str(value).encode()
            parts.append(struct.pack("<I", len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=NUMPY_DTYPES[datatype]).tobytes()
