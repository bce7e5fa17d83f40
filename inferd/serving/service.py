"""The worker service: everything one gunicorn worker serves with, in one object.

Built by the composition root (`inferd.app`) in each worker, after gunicorn's fork,
and only there: building it opens the state directory, repairs it if a reload died
mid-way (unless a reload holds the lock), and loads the serving slot, so the first
request finds the model ready. It owns:

- the `ModelHolder` (the model this worker serves, kept in step with the counter);
- the reload runner the admin endpoints and auto-refresh use (in a worker, each
  reload runs in a child process: `inferd.reloading.child`);
- its background threads, started by `start()` and ended by `stop()`: the slot
  watcher, the registry probe behind `/health/` (MLflow source only), and this
  worker's candidacy for auto-refresh leader (which ends by itself when there is
  nothing to poll).

A service that is never started has no threads: tests build one with a `Reloader`
as its runner (reloads in the test's own process) and drive it directly.
When the state directory cannot be opened, the service still builds, with no holder
and no runner (the reason is logged): the worker answers 503 "Model manager
unavailable" instead of failing to boot in a loop.
"""

from __future__ import annotations

import logging

from inferd.common import notify
from inferd.common.errors import InferdError
from inferd.common.settings import Settings
from inferd.model.loaded import LoadedModel
from inferd.reloading.child import ChildReloads
from inferd.reloading.refresh import RefreshLeader
from inferd.reloading.reload import ReloadRunner, open_reloader
from inferd.serving.holder import ModelHolder
from inferd.serving.registry_probe import RegistryProbe
from inferd.serving.watcher import SlotWatcher
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.app")


class WorkerService:
    def __init__(self, settings: Settings, holder: ModelHolder | None,
                 runner: ReloadRunner | None, probe: RegistryProbe) -> None:
        self.settings = settings
        self.holder = holder
        self.runner = runner
        self.probe = probe
        self._started = False
        self._watcher: SlotWatcher | None = None
        self._leader: RefreshLeader | None = None

    @classmethod
    def open(cls, settings: Settings, runner: ReloadRunner | None = None) -> WorkerService:
        """Open the state directory and load the serving slot. `runner` defaults to
        child-process reloads (a gunicorn worker); a test passes a `Reloader`."""
        probe = RegistryProbe(settings)
        try:
            reloader = open_reloader(settings)
            reloader.try_reconcile()  # a worker that died mid-reload may have left a flip
        except InferdError as exc:
            log.error("Model manager not ready at worker start", extra={"error": str(exc)})
            return cls(settings, None, None, probe)
        holder = ModelHolder(reloader.store, reloader.counter, settings.allow_pickle,
                             on_loaded=_announce)
        try:
            holder.current()  # warm: load the serving slot before the first request
        except InferdError as exc:
            log.error("Model manager not ready at worker start", extra={"error": str(exc)})
        return cls(settings, holder, runner or ChildReloads(settings), probe)

    @property
    def store(self) -> SlotStore | None:
        return self.holder.store if self.holder is not None else None

    def start(self) -> WorkerService:
        """Start the background threads (in the worker, after the fork); once."""
        if self._started:
            return self
        self._started = True
        if self.holder is not None:
            self._watcher = SlotWatcher(self.holder).start()
        self.probe.start()
        if self.runner is not None and self.store is not None:
            self._leader = RefreshLeader(self.settings, self.runner, self.store).start()
        return self

    def stop(self) -> None:
        """Stop the threads `start()` started and wait for them to end (the refresh
        leader lets go of its lock). For tests and tools that build a service in a
        process that goes on; a gunicorn worker's threads are daemons that end with it."""
        if self._watcher is not None:
            self._watcher.stop()
        self.probe.stop()
        if self._leader is not None:
            self._leader.stop()


def _announce(model: LoadedModel) -> None:
    # systemd readiness (READY=1 / STATUS=) once this worker serves a model.
    notify.serving(model.version, model.generation)
