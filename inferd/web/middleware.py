"""Per-request plumbing: correlation id, access log line, request metrics."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import falcon

from inferd import logs, metrics

log = logging.getLogger("inferd.access")

_KNOWN_ROUTES = {"/predict", "/health", "/admin/reload", "/admin/rollback", "/metrics"}


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
        path = req.path.rstrip("/") or "/"
        # One label value for every unknown path, so a scanner cannot blow up cardinality.
        route = path if path in _KNOWN_ROUTES else "other"
        status = resp.status.split(" ", 1)[0] if isinstance(resp.status, str) else str(
            int(resp.status))
        metrics.REQUESTS.labels(req.method, route, status).inc()
        metrics.LATENCY.labels(route).observe(elapsed)
        if route != "/predict" or not status.startswith("2"):
            log.info(
                "%s %s %s", req.method, req.path, status,
                extra={"event": "access", "method": req.method, "path": req.path,
                       "status": int(status), "seconds": round(elapsed, 6),
                       "remote_addr": req.remote_addr},
            )
        logs.correlation_id.set(None)
