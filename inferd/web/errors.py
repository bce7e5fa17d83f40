"""The one map from inferd's errors to HTTP statuses, and the JSON error body.

inferd's own routes answer errors as `{"detail": "..."}`; a protocol with its own error
shape (MLflow's, the Open Inference Protocol's) is given its routes' roots in
`ErrorShapes`, whose handlers (installed on the app) write every error body in the
shape of the root the request's path falls under. Unknown exceptions answer 500 with a
generic detail and are logged with their traceback; clients never see one. The only
status set outside the error table is `/health/`'s, by readiness (below).
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
    """The error shape of the protocol that owns a request's path, and the app's error
    handlers that answer in it. `shapes` maps a route root ("/v2", "/invocations") to
    its ErrorBody; the root and every path below it take that shape, falcon's own 404
    and 405 included.

    PERF: the shape is looked up from the path when an error is answered, not set on
    every request by a middleware (most requests answer no error)."""

    def __init__(self, shapes: dict[str, ErrorBody]) -> None:
        self.shapes = shapes

    def install(self, app: falcon.App) -> None:
        app.add_error_handler(Exception, self.handle_unexpected)
        app.add_error_handler(InferdError, self.handle_inferd_error)
        app.set_error_serializer(self.serialize_http_error)

    def body(self, req: falcon.Request, status: str, message: str) -> dict[str, Any]:
        root = "/" + req.path.split("/", 2)[1]
        return self.shapes.get(root, detail_body)(status, message)

    def handle_inferd_error(self, req: falcon.Request, resp: falcon.Response,
                            exc: InferdError, params: dict[str, Any]) -> None:
        resp.status = status_for(exc)
        resp.media = self.body(req, resp.status, str(exc))

    def handle_unexpected(self, req: falcon.Request, resp: falcon.Response, exc: Exception,
                          params: dict[str, Any]) -> None:
        if isinstance(exc, falcon.HTTPError):
            raise exc  # let falcon's own errors go through the serializer below
        log.exception("Unhandled error", extra={"event": "unhandled", "path": req.path})
        resp.status = falcon.HTTP_500
        resp.media = self.body(req, resp.status,
                               "Internal server error; see the server log for this "
                               "correlation id")

    def serialize_http_error(self, req: falcon.Request, resp: falcon.Response,
                             exc: falcon.HTTPError) -> None:
        """Falcon's own errors (404, 405, ...) in the route's error shape."""
        resp.content_type = falcon.MEDIA_JSON
        resp.media = self.body(req, str(exc.status), exc.description or exc.title)


def status_for(exc: InferdError) -> str:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return falcon.HTTP_500
