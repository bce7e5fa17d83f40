"""Automatic refresh: one poller for the whole service, elected with an flock.

Every gunicorn worker runs a `RefreshLeader` daemon thread. Each interval (with
jitter) a thread that is not the leader tries `flock(LOCK_EX | LOCK_NB)` on
`<state>/refresh.lock`; the one that gets it is the leader for as long as its
process lives (it never lets go), and writes its pid into the file. The kernel
releases the lock when the leader's process dies, so another worker (or the one
gunicorn starts in its place) takes over within one interval. The lock file is
opened close-on-exec, so a reload's child process never inherits it.

The leader's duties, on the same reload path as `POST /admin/reload` (a child
process, `inferd.reloading.child`: the reload lock, validation, the slot protocol):

- while no slot is published (first start with the registry down, say): fetch
  the first model, retrying with backoff, whether or not auto-refresh is on;
- with MODEL_AUTO_REFRESH_SECONDS set and no pinned MLFLOW_MODEL_VERSION: each
  interval, ask the source which version it names now (for an HTTP registry or a
  local file, cheaply, in this process; otherwise the child resolves it), and
  reload when that differs from the version the poller **last saw in the source**,
  kept in `<state>/refresh.json`. Comparing with the source's history rather than
  with the serving slot is what keeps a manual rollback in place: the poller moves
  only when the registry moves.

While the source fails, the delay doubles up to 8 intervals. With nothing to do
(a slot exists and auto-refresh is off or pinned), the thread ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inferd.common.errors import InferdError, SourceError
from inferd.common.settings import Settings
from inferd.common.uris import redact_uri
from inferd.reloading.registry.health import check_registry
from inferd.reloading.reload import ReloadRunner
from inferd.store.layout import StateLayout
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.refresh")

BOOTSTRAP_RETRY_SECONDS = 10.0
MAX_BACKOFF_FACTOR = 8
JITTER = 0.1  # +-10% of each delay


def refresh_mode(settings: Settings) -> str:
    """`off`, `pinned` (MLFLOW_MODEL_VERSION set: nothing to poll) or `polling`."""
    if settings.auto_refresh_seconds is None:
        return "off"
    if settings.model_source == "mlflow" and settings.mlflow_model_version:
        return "pinned"
    return "polling"


def source_target(settings: Settings) -> str:
    """What the poller watches; a remembered version is only valid for the same target."""
    if settings.model_source == "local":
        return f"local {settings.model_path}"
    return (f"mlflow {redact_uri(settings.tracking_uri)} {settings.mlflow_model_name} "
            f"{settings.selector.describe()}")


def log_mode_at_start(settings: Settings) -> None:
    """Called once by the master at start, so the operator sees what will happen."""
    mode = refresh_mode(settings)
    if mode == "pinned":
        log.warning(
            "MODEL_AUTO_REFRESH_SECONDS is set, but MLFLOW_MODEL_VERSION=%s pins the version: "
            "automatic refresh does nothing", settings.mlflow_model_version,
            extra={"event": "auto_refresh", "mode": mode})
    elif mode == "polling":
        log.info("Automatic refresh every %gs by one elected worker",
                 settings.auto_refresh_seconds,
                 extra={"event": "auto_refresh", "mode": mode, "target": source_target(settings)})


def peek_version(settings: Settings) -> str | None:
    """The version the source names now, if that is cheap to learn in this process;
    None when only a reload can tell (SQLite registry). Raises SourceError when the
    source cannot be asked. For a registry, `check_registry` resolves the selector with
    `inferd.reloading.registry.resolver`, as the reload will."""
    if settings.model_source == "local":
        from inferd.reloading.sources.local import LocalSource

        return LocalSource(settings.model_path).resolve().version
    health = check_registry(settings)
    if health.status in ("unreachable", "error"):
        raise SourceError(f"registry {health.status}: {health.reason}")
    return health.registry_version


def _count(duty: str, result: str) -> None:
    """inferd_reloads_total{action="auto_refresh"}: reloads and failures, not quiet rounds.
    Imported here, in the worker, so the master (which imports this module) never
    creates metric files of its own."""
    if result == "unchanged":
        return
    from inferd.common import metrics

    metrics.RELOADS.labels("auto_refresh", result).inc()


def refresh_status(settings: Settings) -> dict[str, object]:
    """Auto-refresh as /health/ shows it (two small file reads, in the calling worker)."""
    layout = StateLayout(settings.state_dir)
    pid = LeaderLock.holder_pid(layout.refresh_lock)
    if pid is not None and not _alive(pid):
        pid = None
    return {"mode": refresh_mode(settings), "interval_seconds": settings.auto_refresh_seconds,
            "leader_pid": pid,
            "last_seen_version": _read_record(layout.refresh_record, source_target(settings))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_record(path: Path, target: str) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("target") != target:
        return None
    version = record.get("version")
    return str(version) if version is not None else None


def jittered(delay: float, draw: float) -> float:
    """`delay` moved by up to JITTER either way; `draw` is uniform in [0, 1). Workers
    that started together then do not all try the lock and the registry at once."""
    return delay * (1 + JITTER * (2 * draw - 1))


class LeaderLock:
    """An exclusive, non-blocking flock held until this process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    @staticmethod
    def holder_pid(path: Path) -> int | None:
        """The pid the current (or last) leader wrote; for /health/ and the tests."""
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


class RefreshLeader:
    """One per worker. `tick()` does one round and says how long to wait before the next."""

    def __init__(
        self,
        settings: Settings,
        runner: ReloadRunner,
        store: SlotStore,
        peek: Callable[[Settings], str | None] = peek_version,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.store = store
        self.peek = peek
        self.rng = rng
        self.mode = refresh_mode(settings)
        self.interval = settings.auto_refresh_seconds or BOOTSTRAP_RETRY_SECONDS
        self.lock = LeaderLock(store.layout.refresh_lock)
        self.record_path = store.layout.refresh_record
        self.target = source_target(settings)
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round --------------------------------------------------------------------------

    def tick(self) -> float | None:
        """One round; None when this thread has nothing left to do."""
        duty = self._duty()
        if duty is None:
            return None
        if not self.lock.held:
            if not self.lock.try_acquire():
                return self._jittered(self.interval)
            log.info("This worker is the refresh leader",
                     extra={"event": "refresh_leader", "mode": self.mode})
        try:
            if duty == "bootstrap":
                self._bootstrap()
            else:
                self._poll()
        except InferdError as exc:
            _count(duty, "failed")
            self.failures += 1
            delay = self._jittered(self.interval * min(2 ** self.failures, MAX_BACKOFF_FACTOR))
            log.warning("Automatic model %s failed; retrying in %.1fs", duty, delay,
                        extra={"event": "auto_refresh", "result": "failed", "error": str(exc),
                               "failures": self.failures})
            return delay
        self.failures = 0
        return self._jittered(self.interval)

    def _duty(self) -> str | None:
        if self.store.current_generation() is None:
            return "bootstrap"
        return "poll" if self.mode == "polling" else None

    def _bootstrap(self) -> None:
        result = self.runner.run()
        self._remember(result.resolved_version)
        _count("bootstrap", result.status)
        log.info("First model published by the refresh leader",
                 extra={"event": "bootstrap", "result": result.status, "version": result.version,
                        "stage": result.stage, "generation": result.generation})

    def _poll(self) -> None:
        last_seen = self._last_seen()
        named = self.peek(self.settings)
        if named is not None and named == last_seen:
            return
        started = time.monotonic()
        result = self.runner.run(unless_version=last_seen)
        self._remember(result.resolved_version)
        _count("poll", result.status)
        if result.status == "reloaded":
            log.info("Automatic model reload applied",
                     extra={"event": "auto_refresh", "result": "reloaded",
                            "uri": result.uri, "version": result.version,
                            "stage": result.stage, "generation": result.generation,
                            "seconds": round(time.monotonic() - started, 3)})
        elif result.status == "noop":
            log.info("Automatic refresh: the source names the model already serving",
                     extra={"event": "auto_refresh", "result": "noop",
                            "version": result.resolved_version})

    # -- what the poller last saw in the source (written by the leader only) ----------------

    def _last_seen(self) -> str | None:
        return _read_record(self.record_path, self.target)

    def _remember(self, version: str | None) -> None:
        if version is None:
            return
        tmp = self.record_path.with_name(f".refresh.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"target": self.target, "version": version,
                                   "seen_at": time.time()}))
        # rename(2): a reader (the next leader) sees the old record or the new one.
        os.replace(tmp, self.record_path)

    def _jittered(self, delay: float) -> float:
        return jittered(delay, self.rng())

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> RefreshLeader:
        """Start this worker's refresh thread (in the worker, after the fork)."""
        self._thread = threading.Thread(target=self._loop, name="inferd-refresh", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread; once it has, this worker no longer holds the leader lock. A
        round under way (a reload child) is waited for up to `timeout` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        # A short random first wait: the workers of a fresh start do not all race at once.
        delay: float | None = self.rng() * min(1.0, self.interval)
        while delay is not None and not self._stop.wait(delay):
            try:
                delay = self.tick()
            except Exception:  # a bug must not end the service's only poller silently
                log.exception("Refresh round failed unexpectedly", extra={"event": "auto_refresh"})
                delay = self._jittered(self.interval)
        with contextlib.suppress(OSError):
            if self._stop.is_set():
                self.lock.release()
