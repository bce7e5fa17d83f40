"""gunicorn settings from inferd's environment, plus the server hooks.

Used as `gunicorn -c python:inferd.gunicorn_conf inferd.app:app` by `inferd serve`;
the repository's `gunicorn.conf.py` re-exports it for `gunicorn -c gunicorn.conf.py`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from inferd.common import logs, notify
from inferd.common.errors import ConfigError
from inferd.common.settings import load_settings
from inferd.server import lifecycle, slow_clients

try:
    _settings = load_settings()
except ConfigError as exc:
    print(f"inferd: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

bind = _settings.bind
workers = _settings.workers
# gthread: a slow reload occupies one thread, while the worker's main loop keeps
# answering gunicorn's heartbeat and its other threads keep serving predictions. inferd's
# subclass answers quick requests on that main loop itself (inferd/server/worker.py).
worker_class = "inferd.server.worker.InlineThreadWorker"
threads = _settings.threads
timeout = _settings.worker_timeout
graceful_timeout = 30
keepalive = 5
# gunicorn >= 25 opens a control socket in $HOME by default; several inferd
# instances (and parallel tests) on one host must not share it, and inferd does
# not use gunicornc, so it is off.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
logconfig_dict = logs.gunicorn_logconfig(_settings.log_level, _settings.access_log)
proc_name = "inferd"


def on_starting(server: Any) -> None:
    # Before gunicorn's master announces READY=1 on its own, with no worker yet:
    # the workers announce it once they can serve (inferd/notify.py).
    notify.claim()
    logs.configure(_settings.log_level)
    lifecycle.on_starting(server, _settings)
    # Imported here, not above: the serving modules import prometheus_client, which
    # chooses multiprocess mode on import, from the directory lifecycle exports.
    import inferd.app
    from inferd.server import prefork
    from inferd.server.preload import freeze_before_fork, preload_serving_modules

    preload_serving_modules()  # shared by every worker, copy-on-write
    if prefork.serves_inferd(server):
        # Built once here and shared likewise; each worker starts it (post_fork). The
        # settings again: lifecycle.on_starting exported the metrics directory to them.
        inferd.app.serve_prebuilt(prefork.open_service(load_settings()))
    freeze_before_fork()
    # Those imports and the slot load gave the master gauge files of its own; the
    # master serves no model, and the "live" gauges must not count it (livemin would
    # report 0).
    lifecycle.forget_live_gauges(os.getpid())


def when_ready(server: Any) -> None:
    # gunicorn listens now (its own sockets or systemd's): judge those, before any
    # worker is forked.
    lifecycle.check_admin_exposure(_settings, server.LISTENERS)


def child_exit(server: Any, worker: Any) -> None:
    lifecycle.child_exit(server, worker, _settings)


def pre_fork(server: Any, worker: Any) -> None:
    from inferd.server import prefork

    prefork.before_fork(server)


def post_fork(server: Any, worker: Any) -> None:
    from inferd.server import prefork

    prefork.in_worker()


def post_worker_init(worker: Any) -> None:
    from inferd.server import prefork

    prefork.in_worker()  # a no-op once post_fork took the service over
    # Reads of a request's headers get a deadline (INFERD_READ_TIMEOUT): gunicorn's own
    # reads have none once the first byte came.
    slow_clients.bound_header_reads(worker, _settings)
    # The JSON access line's few atoms, not gunicorn's every header and environ key.
    logs.AccessLine.install(worker.log)


def pre_request(worker: Any, req: Any) -> None:
    slow_clients.headers_read()
