"""The registry health of this worker, checked in the background and cached, so that
`/health/` never waits on the registry.

One `RegistryProbe` per gunicorn worker, owned by its `WorkerService`: a daemon thread
runs `inferd.reloading.registry.health.check_registry` every INFERD_REGISTRY_PROBE_SECONDS
and keeps the last answer; `/health/` only reads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from inferd.common.settings import Settings
from inferd.reloading.registry.health import RegistryHealth, check_registry

log = logging.getLogger("inferd.registry")


class RegistryProbe:
    """The cached registry health of this worker, refreshed by a daemon thread."""

    def __init__(self, settings: Settings,
                 check: Callable[[Settings], RegistryHealth] = check_registry) -> None:
        self.settings = settings
        self.check = check
        self._latest = RegistryHealth("unknown", "not checked yet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> RegistryHealth:
        return self._latest

    def check_now(self) -> RegistryHealth:
        previous = self._latest
        found = self.check(self.settings)
        if not found.reachable and previous.verified_at is not None:
            found = replace(found, verified_at=previous.verified_at)
        # Log changes, and a first check that finds trouble (not a first "ok").
        if found.status != previous.status and (previous.status != "unknown"
                                                or not found.reachable):
            level = logging.INFO if found.reachable else logging.WARNING
            log.log(level, "Registry is %s", found.status,
                    extra={"event": "registry_health", "status": found.status,
                           "reason": found.reason})
        self._latest = found
        return found

    def start(self) -> RegistryProbe:
        """Start the background checks (in a worker, after the fork)."""
        if self.settings.model_source == "mlflow":
            self._thread = threading.Thread(target=self._loop, name="inferd-registry-probe",
                                            daemon=True)
            self._thread.start()
        else:
            self._latest = self.check(self.settings)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the background checks; waits for a check under way (a few seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_now()
            except Exception:  # never let the probe thread die silently
                log.exception("Registry check failed unexpectedly",
                              extra={"event": "registry_health"})
            self._stop.wait(self.settings.registry_probe_seconds)
