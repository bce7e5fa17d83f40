"""The health use case: is this worker ready, is it degraded, and what does it serve.

Called by `/health/` in a gunicorn worker thread, as often as load balancers like: it
never waits on the registry (the probe thread's last answer is read) and reads the
auto-refresh leader's files at most once a second. The report:

- `ready`: this worker has a model to answer with (the web layer answers 503 if not);
- `status`: `ok`; `degraded` while the registry cannot be used (the model still
  serves); `unavailable` with no model;
- `details.error`: why there is no model, or a newer slot this worker could not load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferd.common.errors import NoModelError, ServiceUnavailableError
from inferd.common.uris import redact_uri
from inferd.model import tensors
from inferd.model.loaded import LoadedModel
from inferd.reloading.refresh import refresh_status
from inferd.reloading.registry.health import RegistryHealth
from inferd.serving.service import WorkerService

REFRESH_STATUS_TTL_SECONDS = 1.0


@dataclass(frozen=True)
class HealthReport:
    ready: bool
    body: dict[str, Any]


def iso_utc(epoch_seconds: float | None) -> str | None:
    """`2025-11-05T12:00:00Z`: the form of `verified_at` and `checked_at`."""
    if epoch_seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


class HealthCheck:
    def __init__(self, service: WorkerService,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.settings = service.settings
        self.clock = clock
        self._refresh: tuple[float, dict[str, object]] | None = None

    def __call__(self) -> HealthReport:
        model, error = self._model()
        registry = self.service.probe.latest()  # cached by the probe thread: never waits
        registry_down = registry.status in ("unreachable", "error")
        if model is None and registry_down:
            error = f"{error}; registry {registry.status}: {registry.reason}"
        manifest = model.manifest if model else {}
        body: dict[str, Any] = {
            "status": ("degraded" if registry_down else "ok") if model else "unavailable",
            "ready": model is not None,
            "details": {"metrics": manifest.get("metrics", {})},
            "mlflow": self._mlflow(manifest, registry),
            # what it takes and gives, as the v2 model metadata says it too
            "model": {**model.describe(), **tensors.describe(model)} if model else None,
            "admin": {"auth": "enabled" if self.settings.admin_token else "disabled"},
        }
        if error:
            body["details"]["error"] = error
        return HealthReport(ready=model is not None, body=body)

    def _model(self) -> tuple[LoadedModel | None, str | None]:
        """The model this worker answers with, and the error to show beside it."""
        holder = self.service.holder
        if holder is None or not holder.available:
            return None, ServiceUnavailableError.MESSAGE
        try:
            model = holder.current()
        except NoModelError as exc:
            return None, str(exc)
        return model, holder.last_error

    def _mlflow(self, manifest: dict[str, Any], registry: RegistryHealth) -> dict[str, Any]:
        if self.settings.model_source != "mlflow":
            return {"status": "not_used", "server_version": None, "verified_at": None,
                    "model_uri": None}
        selector = self.settings.selector
        return {
            "status": registry.status,
            "reason": registry.reason,
            "server_version": registry.server_version,
            "verified_at": iso_utc(registry.verified_at),
            "checked_at": iso_utc(registry.checked_at),
            "model_uri": manifest.get("uri"),  # the model serving here
            "registry_version": registry.registry_version,  # what the selector names now
            "tracking_uri": redact_uri(self.settings.tracking_uri),
            "selector": {"kind": selector.kind, "value": selector.value},
            "auto_refresh": self._refresh_status(),
        }

    def _refresh_status(self) -> dict[str, object]:
        now = self.clock()
        cached = self._refresh
        if cached is None or now - cached[0] > REFRESH_STATUS_TTL_SECONDS:
            cached = self._refresh = (now, refresh_status(self.settings))
        return cached[1]
