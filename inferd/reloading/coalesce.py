"""Admin reloads coalesced in a worker: one child per action at a time, and a bounded
share of the worker's threads.

Each admin call holds a worker thread until its answer comes. Left alone, a storm of
calls (a retrying deploy script, a dozen operators, an attacker with the token) would
start a child process each, every one waiting for the reload lock, and hold every
thread of every worker for as long as the reloads take: `/predict/` would stall behind
them. So the admin use case (`inferd.usecases.admin`) runs its reloads and rollbacks
through a `CoalescingRunner`:

- a call that finds the same action already running in this worker starts no child:
  it waits for that call's answer and answers the same (`reloaded` naming the same
  version, `noop`, or the same error). Its answer is as fresh as a reload that began
  just before it, which is what a caller racing another one can expect;
- at most `max_callers` admin calls (running or waiting) hold this worker's threads at
  once: half its threads, at least one. A call beyond that is refused at once with
  `AdminBusyError` (409 `{"detail": "... busy ..."}`) and should retry once the running
  reload has answered; the worker's other threads stay free for predictions.

Across workers, each worker's running reload has its own child, and those meet at the
reload lock as before (the second one finds the new slot and answers `noop`). The
auto-refresh leader does not go through here: it is one thread already.

Thread-safe; lives as long as the worker's admin use case.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from inferd.common.errors import AdminBusyError
from inferd.reloading.reload import ReloadResult, ReloadRunner

log = logging.getLogger("inferd.admin")


@dataclass
class _Flight:
    """One call of the inner runner, and the answer everyone waiting on it gets."""

    done: threading.Event = field(default_factory=threading.Event)
    result: ReloadResult | None = None
    error: BaseException | None = None


class CoalescingRunner:
    """A `ReloadRunner` wrapping another one (the worker's child-process reloads)."""

    def __init__(self, inner: ReloadRunner, max_callers: int) -> None:
        self.inner = inner
        self.max_callers = max(1, max_callers)
        self._lock = threading.Lock()
        self._callers = 0
        self._flights: dict[tuple[str, str | None], _Flight] = {}

    @classmethod
    def for_threads(cls, inner: ReloadRunner, threads: int) -> CoalescingRunner:
        """Admin calls may hold half of a worker's `threads` (INFERD_THREADS), at least one."""
        return cls(inner, threads // 2)

    def run(self, unless_version: str | None = None) -> ReloadResult:
        return self._coalesced(("run", unless_version),
                               lambda: self.inner.run(unless_version=unless_version))

    def rollback(self) -> ReloadResult:
        return self._coalesced(("rollback", None), self.inner.rollback)

    def _coalesced(self, key: tuple[str, str | None],
                   call: Callable[[], ReloadResult]) -> ReloadResult:
        with self._lock:
            if self._callers >= self.max_callers:
                raise AdminBusyError(
                    f"Busy: this worker is already handling {self._callers} admin "
                    "call(s); retry once the running reload has answered")
            self._callers += 1
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        try:
            if leading:
                return self._lead(key, flight, call)
            log.info("Joining the %s already running in this worker", key[0],
                     extra={"event": key[0], "result": "joined"})
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            return flight.result
        finally:
            with self._lock:
                self._callers -= 1

    def _lead(self, key: tuple[str, str | None], flight: _Flight,
              call: Callable[[], ReloadResult]) -> ReloadResult:
        try:
            flight.result = call()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]  # a call from now on starts a reload of its own
            flight.done.set()
