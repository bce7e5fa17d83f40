"""The admin use cases: reload and rollback, for a caller who must hold the admin token.

Called by `/admin/reload` and `/admin/rollback` in a gunicorn worker thread. Each call
checks the token (constant-time), runs the action on the worker's reload runner (a
child process, `inferd.reloading.child`), counts it in `inferd_reloads_total`
and writes one audit line naming the caller. Failures become domain errors the web
layer maps to statuses: `ForbiddenError`, `ServiceUnavailableError`,
`NoPreviousSlotError` and `ReloadBusyError` as they are (`AdminBusyError` among them:
this worker already holds its share of admin calls, `inferd.reloading.coalesce`),
anything else as `ReloadFailedError` ("Reload failed: <why>"); the old model keeps
serving in every case. Racing calls share one reload per worker (the runner is wrapped
in a `CoalescingRunner`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferd.common import metrics
from inferd.common.errors import (
    AdminBusyError,
    ForbiddenError,
    InferdError,
    NoPreviousSlotError,
    ReloadBusyError,
    ReloadFailedError,
    ServiceUnavailableError,
)
from inferd.common.settings import Settings
from inferd.reloading.coalesce import CoalescingRunner
from inferd.reloading.reload import ReloadResult, ReloadRunner

log = logging.getLogger("inferd.admin")

# Errors that keep their own status (409, 503) instead of "Reload failed" (500).
_PASSED_THROUGH = (NoPreviousSlotError, ReloadBusyError, ServiceUnavailableError)
_MAX_DETAIL = 500


@dataclass(frozen=True)
class Caller:
    """Who asked, for the audit line; `token` is what they sent (never logged)."""

    token: str | None = field(repr=False)
    remote_addr: str | None = None
    forwarded_for: str | None = None

    def audit_fields(self) -> dict[str, Any]:
        forwarded = self.forwarded_for[:200] if self.forwarded_for else None
        return {"remote_addr": self.remote_addr, "forwarded_for": forwarded}


class Admin:
    def __init__(self, runner: ReloadRunner | None, settings: Settings) -> None:
        # None: the worker could not open the state directory. Calls that race each
        # other share one reload, on a bounded share of the threads (coalesce.py).
        self.runner = (CoalescingRunner.for_threads(runner, settings.threads)
                       if runner is not None else None)
        self.token = settings.admin_token
        self.requested_uri = settings.requested_model_uri

    def reload(self, caller: Caller) -> ReloadResult:
        return self._apply("reload", caller, lambda runner: runner.run())

    def rollback(self, caller: Caller) -> ReloadResult:
        return self._apply("rollback", caller, lambda runner: runner.rollback())

    def _apply(self, event: str, caller: Caller,
               action: Callable[[ReloadRunner], ReloadResult]) -> ReloadResult:
        self._authorize(event, caller)
        if self.runner is None:
            raise ServiceUnavailableError
        try:
            result = action(self.runner)
        except AdminBusyError:
            # Not a failed reload: one is running, and this caller is told to come back.
            metrics.RELOADS.labels(event, "busy").inc()
            log.warning("Manual model %s refused: this worker is busy with admin calls",
                        event, extra={"event": event, "result": "busy",
                                      **caller.audit_fields()})
            raise
        except _PASSED_THROUGH as exc:
            self._record_failure(event, caller, exc)
            raise
        except Exception as exc:
            self._record_failure(event, caller, exc)
            # An untranslated bug or OS error still gets the contract's 500 body.
            why = str(exc) if isinstance(exc, InferdError) else f"{type(exc).__name__}: {exc}"
            raise ReloadFailedError(f"Reload failed: {why}"[:_MAX_DETAIL]) from exc
        metrics.RELOADS.labels(event, result.status).inc()
        applied = f"Manual model {event} applied"
        log.info(
            applied if result.status == "reloaded" else f"Manual model {event}: no change",
            extra={"event": event, "result": result.status,
                   "model_uri": result.uri or self.requested_uri, "version": result.version,
                   "stage": result.stage, "generation": result.generation,
                   **caller.audit_fields()},
        )
        return result

    def may_administer(self, caller: Caller) -> bool:
        """Whether `caller` may use the admin endpoints (and read the whole /health/):
        they hold the token, or no token is configured."""
        if self.token is None:
            return True
        return hmac.compare_digest((caller.token or "").encode(), self.token.encode())

    def _authorize(self, event: str, caller: Caller) -> None:
        if self.may_administer(caller):
            return
        given = caller.token or ""
        # Never the token itself: only whether one was sent.
        log.warning(
            "Admin request refused: bad or missing token",
            extra={"event": event, "result": "forbidden", "token_given": bool(given),
                   **caller.audit_fields()},
        )
        metrics.RELOADS.labels(event, "forbidden").inc()
        raise ForbiddenError("Forbidden")

    def _record_failure(self, event: str, caller: Caller, exc: Exception) -> None:
        metrics.RELOADS.labels(event, "failed").inc()
        log.error(
            "Manual model %s failed", event, exc_info=not isinstance(exc, InferdError),
            extra={"event": event, "result": "failed", "error": str(exc),
                   "model_uri": self.requested_uri, **caller.audit_fields()},
        )
