"""Per-request plumbing: correlation id, access log line, request metrics."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import falcon

from inferd import logs, metrics

log = logging.getLogger("inferd.access")


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
        status = str(resp.status_code)
        metrics.observe_request(req.method, route, status, elapsed)
        if route != "/predict" or not status.startswith("2"):
            log.info(
                "%s %s %s", req.method, req.path, status,
                extra={"event": "access", "method": req.method, "path": req.path,
                       "status": int(status), "seconds": round(elapsed, 6),
                       "remote_addr": req.remote_addr},
            )
        logs.correlation_id.set(None)
