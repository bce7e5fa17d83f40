"""The model this worker serves, kept in step with the shared generation counter.

One `ModelHolder` per worker process, shared by the worker's threads. `current()`
runs before every prediction: it reads the mmap'd counter (a few hundred
nanoseconds) and, only when the counter moved, resolves `current`, loads that slot
completely, and then swaps one reference. The worker's slot watcher
(`inferd.serving.watcher`) calls `refresh_if_moved()` every 50 ms, so that load has usually
happened before a request asks. A request that already holds the old
model finishes on it. If the new slot fails to load, the worker keeps serving the
model it has, records the error for /health/, and tries again after a pause that
doubles with each failure of the same slot (5 s, 10 s, ... at most 5 minutes): each try
reads and checksums the whole slot, so a slot that keeps failing must not cost a
worker a full read every 50 ms. Any error counts, an unexpected one (a bug, a
library's own exception) as much as a corrupt file; a newer generation is tried at
once.

A worker that could not open the state directory at start gets a holder without a
store (`ModelHolder.opening`): it answers 503 "Model manager unavailable" and tries
to open the store again (`inferd.serving.store_opener`) until it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferd.common import metrics
from inferd.common.errors import InferdError, NoModelError, ServiceUnavailableError
from inferd.model.loaded import LoadedModel, load_slot
from inferd.serving.store_opener import StoreOpener
from inferd.store.generation import GenerationCounter
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.holder")

RETRY_AFTER_FAILURE_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class _State:
    seen_counter: int  # counter value when `model` was chosen
    model: LoadedModel | None


class _NotOpen:
    """The counter of a holder whose store is not open: never equal to a value seen,
    so every `current()` goes past the fast path and tries to open the store."""

    def read(self) -> int:
        return -2


class ModelHolder:
    def __init__(
        self,
        store: SlotStore | None,
        counter: GenerationCounter | None,
        allow_pickle: bool | None = True,
        clock: Callable[[], float] = time.monotonic,
        on_loaded: Callable[[LoadedModel], None] | None = None,
        opener: StoreOpener | None = None,
        on_opened: Callable[[SlotStore], None] | None = None,
    ) -> None:
        """`store` and `counter` None: not open yet, `opener` opens them (`opening`)."""
        self.store = store
        self.counter: GenerationCounter | _NotOpen = counter or _NotOpen()
        self.opener = opener
        # Told once, when a store that failed to open at start opens (service.py).
        self.on_opened = on_opened
        self.allow_pickle = allow_pickle
        self.clock = clock
        # Told of every slot this worker starts serving (app.py: systemd readiness).
        self.on_loaded = on_loaded
        self._state = _State(seen_counter=-1, model=None)
        self._switch = threading.Lock()
        self._opening = threading.Lock()
        self.last_error: str | None = None
        self._failed_counter: int | None = None
        self._failed_at = 0.0
        self._failures = 0  # consecutive failed loads of `_failed_counter`
        self._load_seconds = 0.0  # how long the model held took to load
        self._quiet = False  # `preload`: a load nobody is told of

    @classmethod
    def opening(cls, opener: StoreOpener, allow_pickle: bool | None = True,
                on_loaded: Callable[[LoadedModel], None] | None = None,
                on_opened: Callable[[SlotStore], None] | None = None) -> ModelHolder:
        """A holder for a worker whose store failed to open: `opener` retries."""
        return cls(None, None, allow_pickle, opener.clock, on_loaded, opener, on_opened)

    @property
    def available(self) -> bool:
        """Whether the store is open (trying to open it, when a try is due)."""
        return self.store is not None or self._open()

    def current(self) -> LoadedModel:
        """The model to answer this request with; raises NoModelError if there is none,
        ServiceUnavailableError while the store cannot be opened."""
        state = self._state
        if self.counter.read() != state.seen_counter:
            state = self._refresh()
        if state.model is None:
            raise NoModelError(self.last_error or "no model is published yet")
        return state.model

    def refresh_if_moved(self) -> None:
        """Load the current slot now if the counter moved (the slot watcher's call), so
        requests find it loaded; `current()` stays the backstop for a request that
        comes first. While the store is not open, it tries to open it."""
        if not self.available:
            return
        if self.counter.read() != self._state.seen_counter:
            self._refresh()

    def preload(self) -> None:
        """Load the current slot now without telling `on_loaded`: the gunicorn master,
        before it forks (`inferd.server.prefork`), serves nothing and announces nothing;
        each worker it forks `adopt`s the model. A failure is recorded as in `current()`."""
        self._quiet = True
        try:
            self.refresh_if_moved()
        finally:
            self._quiet = False
        model = self._state.model
        if model is not None:
            log.info("Master loaded slot for the workers it forks",
                     extra=self._loaded_fields("slot_preloaded", model))

    def adopt(self) -> None:
        """In a process forked from one that loaded the model: announce it and set its
        gauges, as this process would have had it loaded the model itself (the metrics'
        values and systemd's readiness are per process)."""
        # A load that failed in the master is this process's to try again at once.
        self.last_error, self._failed_counter, self._failures = None, None, 0
        model = self._state.model
        if model is not None:
            self._tell_loaded(model)

    def forget(self) -> None:
        """Drop the model: the master, once it has forked its workers, so that it keeps
        no slot's files open (a pruned slot's disk space is freed when its last worker
        lets go). The next `current()` loads the current slot again."""
        with self._switch:
            self._state = _State(seen_counter=-1, model=None)

    def serves_compiled(self) -> bool:
        """Whether `current()` would answer at once with a compiled model: one is held
        and the counter has not moved (so no load is due)."""
        state = self._state
        model = state.model
        return (model is not None and model.form == "compiled"
                and self.counter.read() == state.seen_counter)

    def peek(self) -> LoadedModel | None:
        """The model as of the last refresh, without checking the counter."""
        return self._state.model

    def _refresh(self) -> _State:
        # Blocking on purpose: a request that starts after a reload answered must get
        # the new model, so this worker's threads wait for the load rather than
        # answer from the old one. (Compiled slots make that load milliseconds.)
        with self._switch:
            return self._refresh_locked()

    def _refresh_locked(self) -> _State:
        if not self.available:
            raise ServiceUnavailableError
        # Read the counter before `current`: if a reload lands in between, we load
        # the newer slot under the older counter value and simply refresh again.
        counter = self.counter.read()
        state = self._state
        if counter == state.seen_counter:
            return state  # another thread refreshed while we waited
        if counter == self._failed_counter and (
            self.clock() - self._failed_at < self.retry_delay()
        ):
            return state
        try:
            model = self._load_current(state.model)
        except Exception as exc:  # noqa: BLE001  (any failure keeps the model serving)
            self._record_failure(counter, exc, state)
            return state
        self.last_error = None
        self._failed_counter = None
        self._failures = 0
        self._state = _State(seen_counter=counter, model=model)
        if model is not None and model is not state.model and not self._quiet:
            self._tell_loaded(model)
        return self._state

    def _tell_loaded(self, model: LoadedModel) -> None:
        # This process serves `model` now: its gauges, its log line, and readiness.
        log.info("Worker loaded slot", extra=self._loaded_fields("slot_loaded", model))
        try:
            metrics.slot_loaded(model.generation, model.manifest.get("metrics") or {},
                                self._load_seconds)
        except Exception:  # noqa: BLE001  (a metrics file must not stop the model serving)
            log.exception("Could not record the slot's metrics",
                          extra={"event": "metrics_failed", "generation": model.generation})
        if self.on_loaded is not None:
            self.on_loaded(model)

    def _loaded_fields(self, event: str, model: LoadedModel) -> dict[str, Any]:
        return {"event": event, "generation": model.generation, "version": model.version,
                "seconds": round(self._load_seconds, 4)}

    @property
    def open_error(self) -> str | None:
        """Why the store is not open (None once it is)."""
        return None if self.store is not None or self.opener is None else self.opener.last_error

    def _open(self) -> bool:
        with self._opening:  # one thread opens, and tells `on_opened` once
            if self.store is not None:
                return True
            opened = self.opener.try_open() if self.opener is not None else None
            if opened is None:
                return False
            # The counter last: a thread that sees it knows the store is set.
            self.store, self.counter = opened
        if self.on_opened is not None:
            self.on_opened(opened[0])
        return True

    def retry_delay(self) -> float:
        """How long after the last failed load of a slot the next try waits."""
        exponent = max(self._failures - 1, 0)
        return min(RETRY_AFTER_FAILURE_SECONDS * 2.0 ** min(exponent, 16), MAX_RETRY_SECONDS)

    def _record_failure(self, counter: int, exc: Exception, state: _State) -> None:
        expected = isinstance(exc, (InferdError, OSError))
        self.last_error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        self._failures = self._failures + 1 if counter == self._failed_counter else 1
        self._failed_counter, self._failed_at = counter, self.clock()
        log.error(
            "Worker could not load the current slot; still serving the previous model",
            exc_info=not expected,  # a traceback only for what nobody expected
            extra={"event": "slot_load_failed", "error": self.last_error,
                   "failures": self._failures, "retry_in_seconds": self.retry_delay(),
                   "serving_generation": state.model and state.model.generation},
        )

    def _load_current(self, serving: LoadedModel | None) -> LoadedModel | None:
        assert self.store is not None  # `_refresh_locked` opened it
        generation = self.store.current_generation()
        if generation is None:
            return None
        if serving is not None and serving.generation == generation:
            return serving
        started = time.monotonic()
        manifest = self.store.read_manifest(generation)
        model = load_slot(self.store.layout.slot(generation), manifest, self.allow_pickle)
        self._load_seconds = time.monotonic() - started
        return model
