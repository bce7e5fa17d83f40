"""Bodies of the gunicorn server hooks. They take gunicorn's objects as arguments;
nothing in inferd imports gunicorn.

`on_starting` runs once in the master, before any worker is forked: it checks the
state directory, repairs it after a crash, empties the metrics directory, and
publishes a first slot when none exists. It must leave the master light (no
mlflow or scikit-learn import), since every worker is forked from it: the first
fetch therefore runs in a child process (`inferd.reloading.child`), bounded by
INFERD_RELOAD_TIMEOUT. When a slot exists, start never waits on the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inferd.common.errors import InferdError
from inferd.common.metrics_dir import empty_metrics_dir
from inferd.common.settings import Settings, env_name
from inferd.reloading import refresh
from inferd.server.listeners import exposed_addresses
from inferd.store.layout import StateLayout

log = logging.getLogger("inferd.lifecycle")


# The directory `prepare_metrics_dir` emptied: master-process state, set once in
# on_starting, read when a worker exits.
_metrics_dir: Path | None = None


def prepare_metrics_dir(settings: Settings) -> Path:
    """In the master, before any worker is forked and before the master imports
    prometheus_client (`preload`): check and empty the metrics directory (PROMETHEUS_MULTIPROC_DIR,
    default `<state>/metrics`) and export it. prometheus_client reads the variable
    itself when a process imports it, and chooses multiprocess mode then; the workers
    inherit it from the master's environment."""
    global _metrics_dir
    directory = settings.prometheus_multiproc_dir or StateLayout(settings.state_dir).metrics
    empty_metrics_dir(directory, env_name("prometheus_multiproc_dir"))  # refuses other files
    os.environ[env_name("prometheus_multiproc_dir")] = str(directory)
    _metrics_dir = directory
    return directory


def forget_live_gauges(pid: int) -> None:
    """What prometheus_client's `multiprocess.mark_process_dead` does: delete a
    process's files of "live" gauges, so they stop counting (a dead worker's, and the
    master's own, which it gets by importing the serving modules before the fork).
    In the master, after `prepare_metrics_dir`; a no-op before it."""
    directory = _metrics_dir
    if directory:
        for path in glob.glob(os.path.join(directory, f"gauge_live*_{pid}.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def check_admin_exposure(settings: Settings, listeners: Iterable[Any]) -> None:
    """In the master, once gunicorn listens and before any worker is forked: with no
    admin token, refuse to start (exit 2) when other hosts can reach a listening socket
    (`inferd.server.listeners`, the real sockets, socket activation included), unless
    the operator says INFERD_ADMIN_OPEN=true; then the loudest line inferd writes. On
    loopback only, a warning."""
    if settings.admin_token is not None:
        return
    exposed = exposed_addresses(listeners)
    fields = {"event": "admin_auth_disabled", "exposed": bool(exposed), "listeners": exposed}
    if not exposed:
        log.warning("ADMIN_API_TOKEN is not set: /admin/reload and /admin/rollback are open "
                    "to anyone on this host", extra=fields)
        return
    if not settings.admin_open:
        log.critical(
            "Refusing to start: ADMIN_API_TOKEN is not set and inferd listens on %s, which "
            "other hosts can reach: anyone there could replace or roll back the served "
            "model. Set ADMIN_API_TOKEN_FILE (or ADMIN_API_TOKEN), listen on loopback only, "
            "or set INFERD_ADMIN_OPEN=true to accept that", ", ".join(exposed),
            extra={**fields, "refused": True})
        raise SystemExit(2)
    log.critical(
        "ADMIN_API_TOKEN is not set and inferd listens on %s, which is not loopback "
        "(INFERD_ADMIN_OPEN=true): ANYONE WHO CAN REACH IT CAN REPLACE OR ROLL BACK THE "
        "SERVED MODEL", ", ".join(exposed), extra={**fields, "refused": False})


def on_starting(server: Any, settings: Settings) -> None:
    from inferd.reloading.reload import open_reloader

    refresh.log_mode_at_start(settings)
    try:
        reloader = open_reloader(settings)
        reloader.reconcile()
        has_slot = reloader.store.current_generation() is not None
        # The workers load their settings after this export; the master's first-fetch
        # child gets the same value from these.
        settings = dataclasses.replace(settings,
                                       prometheus_multiproc_dir=prepare_metrics_dir(settings))
    except (InferdError, OSError) as exc:
        # One line that says what is wrong, then exit 2 (bad configuration), no traceback.
        log.critical("State directory unusable: %s", exc, extra={"event": "startup_failed"})
        raise SystemExit(2) from None
    if has_slot:
        log.info("Serving the published slot", extra={
            "event": "startup", "generation": reloader.store.current_generation()})
        return
    bootstrap_first_slot(settings)


def bootstrap_first_slot(settings: Settings) -> None:
    """Fetch and publish the first model in a child process; failure is not fatal:
    the workers start not-ready and their refresh leader keeps retrying."""
    from inferd.reloading.child import ChildReloads

    log.info("No slot published yet; fetching the first model",
             extra={"event": "bootstrap", "source": settings.model_source})
    try:
        result = ChildReloads(settings).run()
    except InferdError as exc:
        log.error("First model fetch failed; serving not-ready, retrying in the background",
                  extra={"event": "bootstrap", "result": "failed", "error": str(exc)})
        return
    log.info("First model published", extra={"event": "bootstrap", "result": result.status,
                                              "version": result.version})


def child_exit(server: Any, worker: Any, settings: Settings) -> None:
    """In the master, when a worker exits: drop its metrics, and repair the store in
    case it died inside a reload (between the flip and the bump, say), so the other
    workers move to the same slot now rather than at the next reload."""
    from inferd.reloading.reload import open_reloader

    forget_live_gauges(worker.pid)
    try:
        open_reloader(settings).try_reconcile()
    except InferdError as exc:
        log.error("Could not check the slot store after a worker exit: %s", exc,
                  extra={"event": "reconcile", "result": "failed"})
