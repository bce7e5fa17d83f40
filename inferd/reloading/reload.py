"""The reload and rollback use cases: the only code that publishes slots.

Called from `/admin/reload`, `/admin/rollback` and auto-refresh (in a child process
of a gunicorn worker, see `inferd.reloading.child`), from the CLI (`inferd reload
--direct`, `inferd rollback`) and at start-up; in every case inside the process
that holds the reload lock, so one reload runs at a time across
all workers and processes. Each step is preceded by `checkpoint(step)`, a hook that
tests use to kill the process at that exact point.

    lock -> reconcile -> resolve -> (same descriptor? noop) -> fetch into staging
         -> validate -> publish (rename) -> flip `current` -> bump generation -> prune
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inferd.common.errors import ReloadBusyError, StoreError
from inferd.common.settings import Settings, env_name
from inferd.model.trust import pickle_allowed
from inferd.reloading.sources.base import Resolved, Source
from inferd.reloading.validate import validate_staged
from inferd.store.download_cache import DownloadCache, entry_key
from inferd.store.generation import GenerationCounter
from inferd.store.slots import SlotStore

log = logging.getLogger("inferd.reload")

STEPS = ("resolved", "fetched", "validated", "renamed", "flipped", "bumped")


@dataclass(frozen=True)
class ReloadResult:
    status: str  # "reloaded" | "noop" | "unchanged" (run(unless_version=...) only)
    detail: str
    version: str | None = None
    stage: str | None = None
    generation: int | None = None
    uri: str | None = None  # the concrete model URI, for the audit log
    # The version the source named, even for a noop: what auto-refresh remembers.
    resolved_version: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "version": self.version,
            "stage": self.stage,
        }


class ReloadRunner(Protocol):
    """What the admin endpoints and auto-refresh call: a `Reloader` in this process
    (tests, `inferd reload --direct`), or `inferd.reloading.child.ChildReloads`, which
    runs the same `Reloader` in a short-lived child process (gunicorn workers)."""

    def run(self, unless_version: str | None = None) -> ReloadResult: ...

    def rollback(self) -> ReloadResult: ...


def _no_checkpoint(step: str) -> None:
    return None


class Reloader:
    def __init__(
        self,
        store: SlotStore,
        counter: GenerationCounter,
        source_factory: Callable[[], Source],
        allow_pickle: bool | None = True,  # INFERD_ALLOW_PICKLE (inferd.model.trust)
        lock_timeout: float = 120.0,
        checkpoint: Callable[[str], None] = _no_checkpoint,
        cache: DownloadCache | None = None,
    ) -> None:
        """`cache`: the MLflow source's download cache, kept in step with the slots."""
        self.store = store
        self.cache = cache
        self.counter = counter
        self.source_factory = source_factory
        self.allow_pickle = allow_pickle
        self.lock_timeout = lock_timeout
        self.checkpoint = checkpoint

    def reconcile(self) -> list[str]:
        """Repair the store after a crash (start-up and before every reload)."""
        return self.reconcile_with_timeout(self.lock_timeout)

    def try_reconcile(self, timeout: float = 0.5) -> list[str]:
        """Reconcile unless a reload holds the lock (that reload reconciles, then
        publishes and bumps by itself). For a worker's boot and a worker's death."""
        try:
            return self.reconcile_with_timeout(timeout)
        except ReloadBusyError:
            return []

    def reconcile_with_timeout(self, timeout: float) -> list[str]:
        with self.store.lock(timeout):
            return self._reconcile_locked()

    def _reconcile_locked(self) -> list[str]:
        actions = self.store.reconcile(self.counter)
        if self.cache is not None:
            actions += [f"removed unfinished download {name}"
                        for name in self.cache.clean_partials()]
        for action in actions:
            log.warning("Slot store repaired", extra={"event": "reconcile", "action": action})
        return actions

    def run(self, unless_version: str | None = None) -> ReloadResult:
        """Make the source's current model the serving one, or answer noop.

        unless_version: auto-refresh's "the registry still names the version I last
        saw there": answer `unchanged` without comparing with the serving slot, so a
        manual rollback is not undone by the next poll.
        """
        with self.store.lock(self.lock_timeout):
            self._reconcile_locked()
            source = self.source_factory()
            resolved = source.resolve()
            self.checkpoint("resolved")
            if unless_version is not None and resolved.version == unless_version:
                return ReloadResult("unchanged", "Source still names the version last seen",
                                    uri=resolved.uri, resolved_version=resolved.version)
            current = self.store.current_manifest()
            if current is not None and current.get("descriptor") == resolved.descriptor:
                return ReloadResult("noop", "Model descriptor unchanged", uri=resolved.uri,
                                    resolved_version=resolved.version)
            generation = self._publish_new(source, resolved)
            self._activate(generation)
            return ReloadResult(
                "reloaded",
                "Model reloaded successfully",
                version=resolved.version,
                stage=resolved.stage or resolved.alias,
                generation=generation,
                uri=resolved.uri,
                resolved_version=resolved.version,
            )

    def _publish_new(self, source: Source, resolved: Resolved) -> int:
        with self.store.staging() as staging:
            started = time.monotonic()
            source.fetch(resolved, staging)
            self.checkpoint("fetched")
            allow_pickle = pickle_allowed(self.allow_pickle, resolved.descriptor.get("source"))
            facts = validate_staged(staging / "model", allow_pickle, compile_into=staging)
            self.checkpoint("validated")
            generation = self.store.next_generation(self.counter.read())
            manifest = {
                "descriptor": resolved.descriptor,
                "name": resolved.descriptor.get("name"),
                "version": resolved.version,
                "stage": resolved.stage,
                "alias": resolved.alias,
                "uri": resolved.uri,
                "metrics": resolved.metrics,
                "fetch_and_validate_seconds": round(time.monotonic() - started, 3),
                **facts,
            }
            self.store.publish(staging, manifest, generation)
            self.checkpoint("renamed")
            return generation

    def _activate(self, generation: int) -> None:
        self.store.activate(generation, self.counter, self.checkpoint)
        for gone in self.store.prune():
            log.info("Old slot removed", extra={"event": "prune", "generation": gone})
        if self.cache is not None:
            for entry in self.cache.prune(self._cache_keys_in_use()):
                log.info("Download no kept slot needs removed from the cache",
                         extra={"event": "prune", "cache_entry": entry})

    def _cache_keys_in_use(self) -> list[tuple[str, str]]:
        keys = []
        for generation in self.store.published():
            try:
                key = entry_key(self.store.read_manifest(generation).get("descriptor") or {})
            except StoreError:
                continue  # a damaged slot: its download is fetched again if ever needed
            if key is not None:
                keys.append(key)
        return keys

    def rollback(self) -> ReloadResult:
        """Serve the previous slot's model again, without contacting the source.

        The previous slot is republished as a new generation (hard links, no copy),
        so the generation still only grows and workers notice as for any reload.
        """
        with self.store.lock(self.lock_timeout):
            self._reconcile_locked()
            previous = self.store.previous_generation()
            with self.store.staging() as staging:
                manifest = self.store.copy_into(previous, staging)
                for key in ("files", "generation", "published_at", "format"):
                    manifest.pop(key, None)
                manifest["rolled_back_from"] = self.store.current_generation()
                manifest["republished_from"] = previous
                generation = self.store.next_generation(self.counter.read())
                self.store.publish(staging, manifest, generation)
            self._activate(generation)
            return ReloadResult(
                "reloaded",
                f"Rolled back to the model of slot {previous}",
                version=manifest.get("version"),
                stage=manifest.get("stage") or manifest.get("alias"),
                generation=generation,
                uri=manifest.get("uri"),
            )


def open_reloader(settings: Settings, **kwargs: Any) -> Reloader:
    """Build a Reloader for `settings` (creates the state directory if needed)."""
    from inferd.reloading.sources import make_source
    from inferd.store.layout import StateLayout

    store = SlotStore(StateLayout(settings.state_dir), settings.slot_retention)
    store.init()
    try:
        counter = GenerationCounter(store.layout.generation)
    except OSError as exc:
        raise StoreError(f"cannot open {store.layout.generation}: {exc}") from exc
    fault_file = settings.test_fault_injection_file
    if fault_file is not None and "checkpoint" not in kwargs:
        kwargs["checkpoint"] = fault_injection(fault_file)
    if settings.model_source == "mlflow" and "cache" not in kwargs:
        kwargs["cache"] = DownloadCache(settings.cache_dir)
    return Reloader(
        store,
        counter,
        lambda: make_source(settings),
        allow_pickle=settings.allow_pickle,
        **kwargs,
    )


# TEST ONLY, never in production: with this setting naming a file, a reloading
# process reads a step name from that file at every step and, on a match, deletes the
# file and kills itself with SIGKILL (tests/integration/test_fault_injection.py).
FAULT_INJECTION_ENV = env_name("test_fault_injection_file")


def fault_injection(step_file: Path) -> Callable[[str], None]:
    def checkpoint(step: str) -> None:
        try:
            wanted = step_file.read_text().strip()
        except FileNotFoundError:
            return
        if wanted == step:
            step_file.unlink(missing_ok=True)  # one kill per request for a fault
            log.critical("Fault injection: killing the reloading process",
                         extra={"event": "fault_injection", "step": step})
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint
