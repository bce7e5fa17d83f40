"""Read a request body with the size limit every protocol shares (INFERD_MAX_BODY_BYTES)."""

from __future__ import annotations

import falcon

from inferd.common.errors import PayloadTooLargeError


def read_body(req: falcon.Request, max_bytes: int) -> bytes:
    """The whole body, or PayloadTooLargeError before reading more than `max_bytes` + 1."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(
            f"request body is {length} bytes, the limit is {max_bytes} (INFERD_MAX_BODY_BYTES)"
        )
    # A chunked body has no Content-Length, and falcon's bounded_stream then reads
    # nothing; gunicorn marks such input as terminated, so the raw stream is safe to
    # read to its end (still capped at max_bytes + 1).
    chunked = length is None and req.env.get("wsgi.input_terminated")
    body = (req.stream if chunked else req.bounded_stream).read(max_bytes + 1)
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"request body is larger than the limit of {max_bytes} bytes "
            "(INFERD_MAX_BODY_BYTES)"
        )
    return body
