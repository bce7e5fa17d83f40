"""Per-request plumbing: correlation id and request metrics.

The access line itself is gunicorn's (JSON via `inferd.common.logs`), which reads the
correlation id back from the response header set here.
"""

from __future__ import annotations

import random
import time
from typing import Any

import falcon

from inferd.common import logs, metrics

# Any other method (a scanner's "PROPFIND", say) is counted as "other", for the same
# reason as unknown paths.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# The bits a version-4 UUID fixes: its version (4) and its variant (RFC 9562).
_UUID4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def new_correlation_id() -> str:
    """32 hex digits of a random version-4 UUID, as `uuid.uuid4().hex` writes them.

    PERF: from the `random` module's generator, not `os.urandom` (one system call a
    request, ~3% of a busy worker's time). A correlation id ties log lines together and
    is no secret, so it needs no cryptographic randomness; `random` reseeds itself in
    every forked process, so workers do not repeat each other's ids."""
    return "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


class RequestContext:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # PERF: the WSGI keys of the two headers, read from the environ directly:
        # `req.get_header` derives the key from the name on every call (0.4 us each).
        env = req.env
        cid = env.get("HTTP_X_CORRELATION_ID") or env.get("HTTP_X_REQUEST_ID")
        cid = (cid or new_correlation_id())[:128]
        req.context.correlation_id = cid
        req.context.started = time.perf_counter()
        logs.correlation_id.set(cid)
        resp.set_header("X-Correlation-ID", cid)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        now = time.perf_counter()
        elapsed = now - getattr(req.context, "started", now)
        # The route template falcon matched; one label value for every unknown path,
        # so a scanner cannot blow up cardinality.
        route = req.uri_template or "other"
        method = req.method if req.method in _METHODS else "other"
        metrics.observe_request(method, route, str(resp.status_code), elapsed)
        logs.correlation_id.set(None)
