"""Open a worker's slot store, and keep trying when that fails.

The master checked the state directory at start, so a worker that cannot open it
meets something passing: too many open files, a full disk, a mount not back yet, an
operator fixing a permission. Such a worker answers 503 "Model manager unavailable"
until the store opens, then serves like any other: its `ModelHolder` asks
`try_open()` at each watcher tick and each request, and this object says when a
new try is due, pausing 1 s after the first failure and twice as long after each
next one, up to 30 s, so a lasting fault costs a syscall or two a few times a
minute and the log one line a try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inferd.common.errors import InferdError
from inferd.store.generation import GenerationCounter
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.holder")

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0

Opened = tuple[SlotStore, GenerationCounter]


class StoreOpener:
    """Thread-safe; used by one `ModelHolder`, in a gunicorn worker."""

    def __init__(self, open_store: Callable[[], Opened], first_error: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.open_store = open_store
        self.clock = clock
        self.last_error = first_error
        self.failures = 1  # the worker's first try, at start, failed with `first_error`
        self._next_try = clock() + FIRST_RETRY_SECONDS
        self._lock = threading.Lock()

    def try_open(self) -> Opened | None:
        """The opened store and counter, or None while it fails or a try is not due."""
        if self.clock() < self._next_try or not self._lock.acquire(blocking=False):
            return None
        try:
            return self._try()
        finally:
            self._lock.release()

    def _try(self) -> Opened | None:
        try:
            opened = self.open_store()
        except (InferdError, OSError) as exc:
            self.last_error = str(exc)
            self.failures += 1
            delay = min(FIRST_RETRY_SECONDS * 2.0 ** (self.failures - 1), MAX_RETRY_SECONDS)
            self._next_try = self.clock() + delay
            log.error("Worker still cannot open the state directory; retrying in %.0fs", delay,
                      extra={"event": "store_open_failed", "error": self.last_error,
                             "failures": self.failures})
            return None
        log.info("Worker opened the state directory", extra={
            "event": "store_opened", "failures": self.failures})
        return opened
