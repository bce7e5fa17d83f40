"""The worker service: everything one gunicorn worker serves with, in one object.

Built once per server, before the first request: building it opens the state
directory, repairs it if a reload died mid-way (unless a reload holds the lock), and
loads the serving slot. Under inferd's gunicorn hooks the master builds it before it
forks (`inferd.server.prefork`), so the workers share it copy-on-write, and each worker
takes it over after the fork (`start_after_fork`); run without those hooks, the
composition root (`inferd.app`) builds it in each worker. It owns:

- the `ModelHolder` (the model this worker serves, kept in step with the counter);
- the reload runner the admin endpoints and auto-refresh use (in a worker, each
  reload runs in a child process: `inferd.reloading.child`);
- its background threads, started by `start()` and ended by `stop()`: the slot
  watcher, the registry probe behind `/health/` (MLflow source only), and this
  worker's candidacy for auto-refresh leader (which ends by itself when there is
  nothing to poll).

A service that is never started has no threads: tests build one with a `Reloader`
as its runner (reloads in the test's own process) and drive it directly.
When the state directory cannot be opened, the service still builds (the reason is
logged): the worker answers 503 "Model manager unavailable" instead of failing to
boot in a loop, and its holder keeps trying to open the store
(`inferd.serving.store_opener`); once it opens, the worker serves and reloads like
the others, and its refresh candidacy starts then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inferd.common import notify
from inferd.common.errors import InferdError, ServiceUnavailableError
from inferd.common.settings import Settings
from inferd.model.loaded import LoadedModel
from inferd.reloading.child import ChildReloads
from inferd.reloading.refresh import RefreshLeader
from inferd.reloading.reload import ReloadResult, ReloadRunner, open_reloader
from inferd.serving.holder import ModelHolder
from inferd.serving.registry_probe import RegistryProbe
from inferd.serving.store_opener import Opened, StoreOpener
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
        self._leader_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, runner: ReloadRunner | None = None,
             clock: Callable[[], float] = time.monotonic, warm: bool = True) -> WorkerService:
        """Open the state directory and, when `warm`, load the serving slot. `runner`
        defaults to child-process reloads (a gunicorn worker); a test passes a
        `Reloader`. The gunicorn master opens it unwarmed (`inferd.server.prefork`)."""
        probe = RegistryProbe(settings)
        try:
            opened = _open_store(settings)
        except InferdError as exc:
            log.error("Model manager not ready at worker start; retrying",
                      extra={"event": "store_open_failed", "error": str(exc)})
            service = cls(settings, None, None, probe)
            opener = StoreOpener(lambda: _open_store(settings), str(exc), clock)
            service.holder = ModelHolder.opening(opener, settings.allow_pickle,
                                                 on_loaded=_announce,
                                                 on_opened=service._store_opened)
            service.runner = _OnceOpen(service.holder, runner or ChildReloads(settings))
            return service
        holder = ModelHolder(*opened, settings.allow_pickle, on_loaded=_announce)
        if warm:
            _warm(holder)
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
        if self.store is not None:
            self._start_leader(self.store)
        return self

    def start_after_fork(self) -> WorkerService:
        """In a worker forked from the master that opened this service: take the model
        the master loaded as this worker's own (`ModelHolder.adopt`), or load the
        current slot now, before the first request; then `start()`."""
        if self.holder is not None:
            self.holder.adopt()
            _warm(self.holder)
        return self.start()

    def _start_leader(self, store: SlotStore) -> None:
        with self._leader_lock:
            if self.runner is not None and self._leader is None:
                self._leader = RefreshLeader(self.settings, self.runner, store).start()

    def _store_opened(self, store: SlotStore) -> None:
        # The holder opened a store that had failed at start; in a started service the
        # refresh candidacy begins now (in the thread that opened it).
        if self._started:
            self._start_leader(store)

    def stop(self) -> None:
        """Stop the threads `start()` started and wait for them to end (the refresh
        leader lets go of its lock). For tests and tools that build a service in a
        process that goes on; a gunicorn worker's threads are daemons that end with it."""
        if self._watcher is not None:
            self._watcher.stop()
        self.probe.stop()
        if self._leader is not None:
            self._leader.stop()


def _open_store(settings: Settings) -> Opened:
    reloader = open_reloader(settings)
    reloader.try_reconcile()  # a worker that died mid-reload may have left a flip
    return reloader.store, reloader.counter


class _OnceOpen:
    """The reload runner of a worker whose store failed to open at start: 503 "Model
    manager unavailable" until the holder has opened it."""

    def __init__(self, holder: ModelHolder, runner: ReloadRunner) -> None:
        self.holder = holder
        self.runner = runner

    def run(self, unless_version: str | None = None) -> ReloadResult:
        self._check()
        return self.runner.run(unless_version)

    def rollback(self) -> ReloadResult:
        self._check()
        return self.runner.rollback()

    def _check(self) -> None:
        if not self.holder.available:
            raise ServiceUnavailableError


def _warm(holder: ModelHolder) -> None:
    # Load the serving slot before the first request (a no-op when it is loaded).
    try:
        holder.current()
    except InferdError as exc:
        log.error("Model manager not ready at worker start", extra={"error": str(exc)})


def _announce(model: LoadedModel) -> None:
    # systemd readiness (READY=1 / STATUS=) once this worker serves a model.
    notify.serving(model.version, model.generation)
