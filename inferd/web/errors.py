"""The one map from inferd's errors to HTTP statuses, and the JSON error body.

inferd's own routes answer errors as `{"detail": "..."}`; a protocol with its own error
shape (MLflow's, the Open Inference Protocol's) is given its routes' roots in
`ErrorShapes`, which sets `req.context.error_body` before routing, and every handler
below writes the body through it. Unknown exceptions answer 500 with a generic detail
and are logged with their traceback; clients never see one. The only status
set outside the error table is `/health/`'s, by readiness (below).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import falcon

from inferd.common.errors import (
    AdminBusyError,
    BadRequestError,
    ForbiddenError,
    InferdError,
    NoModelError,
    NoPreviousSlotError,
    PayloadTooLargeError,
    ReloadBusyError,
    ReloadFailedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)

log = logging.getLogger("inferd.web")

# Most specific first; the first isinstance match wins.
STATUS: tuple[tuple[type[InferdError], str], ...] = (
    (PayloadTooLargeError, falcon.HTTP_413),
    (UnsupportedMediaTypeError, falcon.HTTP_415),
    (RequestTimeoutError, falcon.HTTP_408),
    (BadRequestError, falcon.HTTP_400),
    (ForbiddenError, falcon.HTTP_403),
    (NoModelError, falcon.HTTP_503),
    (ServiceUnavailableError, falcon.HTTP_503),
    (NoPreviousSlotError, falcon.HTTP_409),
    (AdminBusyError, falcon.HTTP_409),
    (ReloadBusyError, falcon.HTTP_503),
    (ReloadFailedError, falcon.HTTP_500),
)

# `/health/` answers its report either way; a load balancer reads readiness from this.
HEALTH_STATUS = {True: falcon.HTTP_200, False: falcon.HTTP_503}


# (status line, message) -> the JSON body of an error answer.
ErrorBody = Callable[[str, str], dict[str, Any]]


def detail_body(status: str, message: str) -> dict[str, Any]:
    return {"detail": message}


class ErrorShapes:
    """Middleware: the error shape of the protocol that owns a request's path. `shapes`
    maps a route root ("/v2", "/invocations") to its ErrorBody; the root and every path
    below it take that shape, falcon's own 404 and 405 included, since this runs before
    routing."""

    def __init__(self, shapes: dict[str, ErrorBody]) -> None:
        self.shapes = shapes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        root = "/" + req.path.split("/", 2)[1]
        shape = self.shapes.get(root)
        if shape is not None:
            req.context.error_body = shape


def _body(req: falcon.Request, status: str, message: str) -> dict[str, Any]:
    error_body: ErrorBody = getattr(req.context, "error_body", detail_body)
    return error_body(status, message)


def status_for(exc: InferdError) -> str:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return falcon.HTTP_500


def handle_inferd_error(req: falcon.Request, resp: falcon.Response, exc: InferdError,
                        params: dict[str, Any]) -> None:
    resp.status = status_for(exc)
    resp.media = _body(req, resp.status, str(exc))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception,
                      params: dict[str, Any]) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc  # let falcon's own errors go through the serializer below
    log.exception("Unhandled error", extra={"event": "unhandled", "path": req.path})
    resp.status = falcon.HTTP_500
    resp.media = _body(req, resp.status,
                       "Internal server error; see the server log for this correlation id")


def serialize_http_error(req: falcon.Request, resp: falcon.Response,
                         exc: falcon.HTTPError) -> None:
    """Falcon's own errors (404, 405, ...) in the route's error shape."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = _body(req, str(exc.status), exc.description or exc.title)
