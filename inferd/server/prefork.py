"""The workers' service, opened once in the gunicorn master before it forks.

In CPython 3.11 running code writes the reference counts of the objects it uses, so
each page of the master's that a worker's own start touches is copied into that
worker. Opening the state directory, loading the slot and building the Falcon app in
each worker after the fork copied about 5 MB a worker (docs/performance.md, "Memory");
done once in the master, the workers share those pages instead.

What stays each worker's, after the fork (`in_worker`): its threads, its gauges and
systemd readiness for the model (`ModelHolder.adopt`), and following the generation
counter before each request, as before.

The master loads the serving slot only when it is compiled: a fallback slot would bring
scikit-learn, pandas or MLflow into the master, and so into every worker, even once
they serve a compiled slot. And the master holds that model only while it forks its
first workers. Then it lets go (`ModelHolder.forget`), so that a process that serves
nothing keeps no slot's files open once a reload has pruned them. A worker forked
later (a restart, or `TTIN`) loads the slot itself.
"""

from __future__ import annotations

import os
from typing import Any

from inferd.common.errors import InferdError
from inferd.common.settings import Settings
from inferd.serving.service import WorkerService

_service: WorkerService | None = None
_master_pid: int | None = None
_taken_over_in: int | None = None  # the worker process that took the service over
_forking_last_worker = False
APP = "inferd.app:app"


def serves_inferd(server: Any) -> bool:
    """Whether gunicorn's `server` serves inferd's app (another app may run under
    inferd's settings and hooks: the benchmarks' bare Falcon floor does)."""
    return getattr(server.app, "app_uri", None) == APP or server.cfg.wsgi_app == APP


def open_service(settings: Settings) -> WorkerService:
    """In the master (gunicorn's `on_starting`, after the slot store is ready): open the
    service every worker will take over, with a compiled serving slot loaded."""
    global _service, _master_pid
    service = WorkerService.open(settings, warm=False)
    if service.holder is not None and _serves_compiled(service):
        service.holder.preload()
    _service, _master_pid = service, os.getpid()
    os.register_at_fork(after_in_parent=_after_fork_in_master)
    return service


def before_fork(server: Any) -> None:
    """gunicorn's `pre_fork`, in the master: note whether this fork completes the set."""
    global _forking_last_worker
    _forking_last_worker = len(server.WORKERS) + 1 >= server.num_workers


def in_worker() -> None:
    """In a new worker: take the master's service over, once. gunicorn's `post_fork`
    calls it, and `post_worker_init` again in case a deployment's own configuration
    replaced one of the two hooks."""
    global _taken_over_in
    if _service is None or _taken_over_in == os.getpid() or os.getpid() == _master_pid:
        return
    _taken_over_in = os.getpid()
    _service.start_after_fork()


def _after_fork_in_master() -> None:
    # Registered for every fork of the process and inherited by the workers: only the
    # master's forks of its workers count (a worker may fork, say a pyfunc model's
    # multiprocessing, and must keep its model).
    global _forking_last_worker
    if (os.getpid() == _master_pid and _forking_last_worker and _service is not None
            and _service.holder is not None):
        _service.holder.forget()
    _forking_last_worker = False


def _serves_compiled(service: WorkerService) -> bool:
    store = service.store
    if store is None:
        return False
    try:
        generation = store.current_generation()
        return generation is not None and (
            store.read_manifest(generation).get("form") == "compiled")
    except (InferdError, OSError):
        return False  # each worker's own load says what is wrong
