"""Falcon resources: parse, call one core function, format. No model logic here."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import falcon
import orjson

from inferd.common import metrics
from inferd.common.errors import (
    InferdError,
    NoModelError,
    NoPreviousSlotError,
    PayloadTooLargeError,
    ReloadBusyError,
)
from inferd.common.settings import Settings
from inferd.reloading.refresh import refresh_status
from inferd.reloading.registry import RegistryHealth
from inferd.reloading.reload import ReloadResult, ReloadRunner
from inferd.reloading.sources import redact_uri
from inferd.serving.holder import ModelHolder
from inferd.serving.registry_probe import RegistryProbe
from inferd.web.codecs import native as payload

log = logging.getLogger("inferd.admin")


class PredictResource:
    def __init__(self, holder: ModelHolder, settings: Settings) -> None:
        self.holder = holder
        self.max_body = settings.max_body_bytes
        self.max_rows = settings.max_rows

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self.max_body:
            raise PayloadTooLargeError(
                f"request body is {length} bytes, the limit is {self.max_body} "
                "(INFERD_MAX_BODY_BYTES)"
            )
        # A chunked body has no Content-Length, and falcon's bounded_stream then reads
        # nothing; gunicorn marks such input as terminated, so the raw stream is safe
        # to read to its end (still capped at max_body + 1).
        stream = req.stream if length is None and req.env.get("wsgi.input_terminated") else (
            req.bounded_stream)
        body = stream.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise PayloadTooLargeError(
                f"request body is larger than the limit of {self.max_body} bytes "
                "(INFERD_MAX_BODY_BYTES)"
            )
        rows = payload.decode(body, self.max_rows)
        model = self.holder.current()  # one reference for the whole request
        predictions = model.predict(rows)
        metrics.PREDICTED_ROWS.inc(len(rows))
        resp.data = payload.encode(predictions, model.version)
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("X-Model-Version", model.version)


class HealthResource:
    def __init__(self, holder: ModelHolder | None, settings: Settings,
                 probe: RegistryProbe | None = None) -> None:
        self.holder = holder
        self.settings = settings
        self.probe = probe or RegistryProbe(settings)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        model = None
        error = None
        if self.holder is None:
            error = "Model manager unavailable"
        else:
            try:
                model = self.holder.current()
            except NoModelError as exc:
                error = str(exc)
            if model is not None and self.holder.last_error:
                error = self.holder.last_error
        manifest = model.manifest if model else {}
        registry = self.probe.latest()  # cached by the probe thread: never waits
        registry_down = registry.status in ("unreachable", "error")
        if model is None and registry_down:
            error = f"{error}; registry {registry.status}: {registry.reason}"
        body: dict[str, Any] = {
            # Serving is "ok", or "degraded" while the registry cannot be used; a newer
            # slot this worker could not load shows in details.error.
            "status": ("degraded" if registry_down else "ok") if model else "unavailable",
            "ready": model is not None,
            "details": {"metrics": manifest.get("metrics", {})},
            "mlflow": self._mlflow(manifest, registry),
            "model": model.describe() if model else None,
            "admin": {"auth": "enabled" if self.settings.admin_token else "disabled"},
        }
        if error:
            body["details"]["error"] = error
        resp.status = falcon.HTTP_200 if model else falcon.HTTP_503
        resp.data = orjson.dumps(body)
        resp.content_type = falcon.MEDIA_JSON

    def _mlflow(self, manifest: dict[str, Any], registry: RegistryHealth) -> dict[str, Any]:
        if self.settings.model_source != "mlflow":
            return {"status": "not_used", "server_version": None, "verified_at": None,
                    "model_uri": None}
        kind, value = self.settings.selector
        return {
            "status": registry.status,
            "reason": registry.reason,
            "server_version": registry.server_version,
            "verified_at": registry.verified_at,
            "checked_at": registry.checked_at,
            "model_uri": manifest.get("uri"),  # the model serving here
            "registry_version": registry.registry_version,  # what the selector names now
            "tracking_uri": redact_uri(self.settings.tracking_uri),
            "selector": {"kind": kind, "value": value},
            "auto_refresh": refresh_status(self.settings),
        }


# The event name and the successful message of each admin action, as operators grep them.
_ACTIONS = {"run": ("reload", "Manual model reload applied"),
            "rollback": ("rollback", "Manual model rollback applied")}


class _AdminResource:
    def __init__(self, reloader: ReloadRunner | None, settings: Settings) -> None:
        self.reloader = reloader
        self.token = settings.admin_token
        self.header = settings.admin_token_header
        self.requested_uri = settings.requested_model_uri

    def _caller(self, req: falcon.Request) -> dict[str, Any]:
        forwarded = req.get_header("X-Forwarded-For")
        return {"remote_addr": req.remote_addr,
                "forwarded_for": forwarded[:200] if forwarded else None}

    def _authorize(self, req: falcon.Request, resp: falcon.Response, event: str) -> bool:
        if self.token is None:
            return True
        given = req.get_header(self.header) or ""
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        # Never the token itself: only whether one was sent.
        log.warning(
            "Admin request refused: bad or missing token",
            extra={"event": event, "result": "forbidden", "token_given": bool(given),
                   **self._caller(req)},
        )
        metrics.RELOADS.labels(event, "forbidden").inc()
        resp.status = falcon.HTTP_403
        resp.media = {"detail": "Forbidden"}
        return False

    def _answer(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        event, applied = _ACTIONS[action]
        if not self._authorize(req, resp, event):
            return
        if self.reloader is None:
            resp.status = falcon.HTTP_503
            resp.media = {"detail": "Model manager unavailable"}
            return
        try:
            result: ReloadResult = getattr(self.reloader, action)()
        except Exception as exc:
            metrics.RELOADS.labels(event, "failed").inc()
            expected = isinstance(exc, InferdError)
            log.error(
                "Manual model %s failed", event, exc_info=not expected,
                extra={"event": event, "result": "failed", "error": str(exc),
                       "model_uri": self.requested_uri, **self._caller(req)},
            )
            if isinstance(exc, NoPreviousSlotError | ReloadBusyError):
                raise  # 409 / 503 from the error table, not "Reload failed"
            # An untranslated bug or OS error still gets the contract's 500 body.
            why = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            resp.status = falcon.HTTP_500
            resp.media = {"detail": f"Reload failed: {why}"[:500]}
            return
        metrics.RELOADS.labels(event, result.status).inc()
        log.info(
            applied if result.status == "reloaded" else f"Manual model {event}: no change",
            extra={"event": event, "result": result.status,
                   "model_uri": result.uri or self.requested_uri, "version": result.version,
                   "stage": result.stage, "generation": result.generation,
                   **self._caller(req)},
        )
        resp.media = result.body()


class ReloadResource(_AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, "run")


class RollbackResource(_AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, "rollback")


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = metrics.exposition()
