"""The model this worker serves, kept in step with the shared generation counter.

One `ModelHolder` per worker process, shared by the worker's threads. `current()`
runs before every prediction: it reads the mmap'd counter (a few hundred
nanoseconds) and, only when the counter moved, resolves `current`, loads that slot
completely, and then swaps one reference. The worker's slot watcher
(`inferd.serving.watcher`) calls `refresh_if_moved()` every 50 ms, so that load has usually
happened before a request asks. A request that already holds the old
model finishes on it. If the new slot fails to load, the worker keeps serving the
model it has, records the error for /health/, and tries again after a pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inferd.common import metrics
from inferd.common.errors import InferdError, NoModelError
from inferd.model.loaded import LoadedModel, load_slot
from inferd.store.generation import GenerationCounter
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.holder")

RETRY_AFTER_FAILURE_SECONDS = 5.0


@dataclass(frozen=True)
class _State:
    seen_counter: int  # counter value when `model` was chosen
    model: LoadedModel | None


class ModelHolder:
    def __init__(
        self,
        store: SlotStore,
        counter: GenerationCounter,
        allow_pickle: bool | None = True,
        clock: Callable[[], float] = time.monotonic,
        on_loaded: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.store = store
        self.counter = counter
        self.allow_pickle = allow_pickle
        self.clock = clock
        # Told of every slot this worker starts serving (app.py: systemd readiness).
        self.on_loaded = on_loaded
        self._state = _State(seen_counter=-1, model=None)
        self._switch = threading.Lock()
        self.last_error: str | None = None
        self._failed_counter: int | None = None
        self._failed_at = 0.0

    def current(self) -> LoadedModel:
        """The model to answer this request with; raises NoModelError if there is none."""
        state = self._state
        if self.counter.read() != state.seen_counter:
            state = self._refresh()
        if state.model is None:
            raise NoModelError(self.last_error or "no model is published yet")
        return state.model

    def refresh_if_moved(self) -> None:
        """Load the current slot now if the counter moved (the slot watcher's call), so
        requests find it loaded; `current()` stays the backstop for a request that
        comes first."""
        if self.counter.read() != self._state.seen_counter:
            self._refresh()

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
        # Read the counter before `current`: if a reload lands in between, we load
        # the newer slot under the older counter value and simply refresh again.
        counter = self.counter.read()
        state = self._state
        if counter == state.seen_counter:
            return state  # another thread refreshed while we waited
        if counter == self._failed_counter and (
            self.clock() - self._failed_at < RETRY_AFTER_FAILURE_SECONDS
        ):
            return state
        try:
            model = self._load_current(state.model)
        except (InferdError, OSError) as exc:
            self.last_error = str(exc)
            self._failed_counter, self._failed_at = counter, self.clock()
            log.error(
                "Worker could not load the current slot; still serving the previous model",
                extra={"event": "slot_load_failed", "error": str(exc),
                       "serving_generation": state.model and state.model.generation},
            )
            return state
        self.last_error = None
        self._failed_counter = None
        self._state = _State(seen_counter=counter, model=model)
        if model is not None and model is not state.model and self.on_loaded is not None:
            self.on_loaded(model)
        return self._state

    def _load_current(self, serving: LoadedModel | None) -> LoadedModel | None:
        generation = self.store.current_generation()
        if generation is None:
            return None
        if serving is not None and serving.generation == generation:
            return serving
        started = time.monotonic()
        manifest = self.store.read_manifest(generation)
        model = load_slot(self.store.layout.slot(generation), manifest, self.allow_pickle)
        seconds = time.monotonic() - started
        metrics.slot_loaded(generation, manifest.get("metrics") or {}, seconds)
        log.info(
            "Worker loaded slot",
            extra={"event": "slot_loaded", "generation": generation,
                   "version": model.version, "seconds": round(seconds, 4)},
        )
        return model
