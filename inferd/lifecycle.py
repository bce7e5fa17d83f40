"""Bodies of the gunicorn server hooks. They take gunicorn's objects as arguments;
nothing in inferd imports gunicorn.

`on_starting` runs once in the master, before any worker is forked: it checks the
state directory, repairs it after a crash, empties the metrics directory, and
publishes a first slot when none exists. It must leave the master light (no
mlflow or scikit-learn import), since every worker is forked from it: the first
fetch therefore runs in a child process (`inferd.reload_child`), bounded by
INFERD_RELOAD_TIMEOUT. When a slot exists, start never waits on the registry.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from inferd import refresh
from inferd.errors import InferdError
from inferd.settings import Settings

log = logging.getLogger("inferd.lifecycle")


def prepare_metrics_dir(settings: Settings) -> None:
    """Point prometheus multiprocess mode at an empty directory (inherited by workers)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.state_dir / "metrics")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def on_starting(server: Any, settings: Settings) -> None:
    from inferd.reload import open_reloader

    prepare_metrics_dir(settings)
    if settings.admin_token is None:
        log.warning(
            "ADMIN_API_TOKEN is not set: /admin/reload and /admin/rollback are open to "
            "anyone who can reach %s", settings.bind,
            extra={"event": "admin_auth_disabled", "bind": settings.bind},
        )
    refresh.log_mode_at_start(settings)
    try:
        reloader = open_reloader(settings)
        reloader.reconcile()
        has_slot = reloader.store.current_generation() is not None
    except InferdError as exc:
        log.critical("State directory unusable: %s", exc, extra={"event": "startup_failed"})
        raise SystemExit(f"inferd: {exc}") from None
    if has_slot:
        log.info("Serving the published slot", extra={
            "event": "startup", "generation": reloader.store.current_generation()})
        return
    bootstrap_first_slot(settings)


def bootstrap_first_slot(settings: Settings) -> None:
    """Fetch and publish the first model in a child process; failure is not fatal:
    the workers start not-ready and their refresh leader keeps retrying."""
    from inferd.reload_child import ChildReloads

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
    from inferd import metrics
    from inferd.reload import open_reloader

    metrics.mark_process_dead(worker.pid)
    try:
        open_reloader(settings).try_reconcile()
    except InferdError as exc:
        log.error("Could not check the slot store after a worker exit: %s", exc,
                  extra={"event": "reconcile", "result": "failed"})
