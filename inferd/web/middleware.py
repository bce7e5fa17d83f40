"""Per-request plumbing: correlation id and request metrics.

The access line itself is gunicorn's (JSON via `inferd.common.logs`), which reads the
correlation id back from the response header set here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import falcon

from inferd.common import logs, metrics

# Any other method (a scanner's "PROPFIND", say) is counted as "other", for the same
# reason as unknown paths.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestContext:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        cid = req.get_header("X-Correlation-ID") or req.get_header("X-Request-ID")
        cid = (cid or uuid.uuid4().hex)[:128]
        req.context.correlation_id = cid
        req.context.started = time.perf_counter()
        logs.correlation_id.set(cid)
        resp.set_header("X-Correlation-ID", cid)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        elapsed = time.perf_counter() - getattr(req.context, "started", time.perf_counter())
        # The route template falcon matched; one label value for every unknown path,
        # so a scanner cannot blow up cardinality.
        route = req.uri_template or "other"
        method = req.method if req.method in _METHODS else "other"
        metrics.observe_request(method, route, str(resp.status_code), elapsed)
        logs.correlation_id.set(None)
