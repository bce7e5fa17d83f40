"""The slot watcher: one daemon thread per worker that loads a new slot before a
request needs it.

Started by the `WorkerService` of each worker (after gunicorn's fork, so each worker has its
own). Every `interval` seconds it reads the memory-mapped generation counter (a few
hundred nanoseconds) and, when it moved, has the holder load the new slot. So the first
requests after a reload find the model loaded and are as fast as the rest. A request
that arrives between the bump and the end of that load still gets the new model: it
sees the moved counter in `ModelHolder.current()` and waits for the same load.
"""

from __future__ import annotations

import logging
import threading
import weakref

from inferd.serving.holder import ModelHolder

log = logging.getLogger("inferd.watcher")

INTERVAL_SECONDS = 0.05


class SlotWatcher:
    """Holds its holder weakly: when the app that owns the holder goes away (an app
    built in a test, say), the thread ends at its next tick instead of polling forever."""

    def __init__(self, holder: ModelHolder, interval: float = INTERVAL_SECONDS) -> None:
        self._holder = weakref.ref(holder)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inferd-slot-watcher",
                                        daemon=True)

    def start(self) -> SlotWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def wait_ended(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            holder = self._holder()
            if holder is None:
                return
            try:
                holder.refresh_if_moved()
            except Exception:  # a bug here must not end the watching; the holder logs
                # load failures itself, this is for anything it did not expect.
                log.exception("Slot watcher failed to refresh", extra={"event": "watcher"})
            finally:
                del holder
