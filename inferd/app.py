"""Composition root of a worker: `create_app(settings)` wires store, holder, reloader
and resources into a Falcon WSGI app. `app` is what gunicorn imports
(`inferd.app:app`), once per worker, after the fork.

In a worker (no reloader passed in) each reload runs in a child process
(`inferd.reload_child`), and two daemon threads start: the registry probe behind
/health/ and the worker's candidacy for refresh leader (`inferd.refresh`). A test
that passes its own `Reloader` gets reloads in its own process and no threads."""

from __future__ import annotations

import logging

import falcon

from inferd import logs, notify
from inferd.errors import InferdError
from inferd.holder import ModelHolder
from inferd.model import LoadedModel
from inferd.refresh import RefreshLeader
from inferd.registry_health import RegistryProbe
from inferd.reload import Reloader, ReloadRunner, open_reloader
from inferd.reload_child import ChildReloads
from inferd.settings import Settings, load_settings
from inferd.watcher import SlotWatcher
from inferd.web import docs, errors, resources
from inferd.web.middleware import RequestContext

log = logging.getLogger("inferd.app")


def create_app(settings: Settings, reloader: Reloader | None = None,
               watch: bool = True) -> falcon.App:
    """watch=False: no slot watcher thread, so slots load only on the request path
    (tests of that path use it)."""
    holder: ModelHolder | None = None
    in_worker = reloader is None
    try:
        reloader = reloader or open_reloader(settings)
        reloader.try_reconcile()  # a worker that died mid-reload may have left a flip unbumped
        holder = ModelHolder(reloader.store, reloader.counter, settings.allow_pickle,
                             on_loaded=_announce)
        if watch:
            SlotWatcher(holder).start()  # loads each new slot before a request needs it
        holder.current()  # warm: load the serving slot before the first request
    except InferdError as exc:
        log.error("Model manager not ready at worker start", extra={"error": str(exc)})
        if holder is None:
            reloader = None

    runner: ReloadRunner | None = None
    probe = RegistryProbe(settings)
    if in_worker:
        probe.start()
    if reloader is not None:
        runner = ChildReloads(settings) if in_worker else reloader
        if in_worker:
            RefreshLeader(settings, runner, reloader.store).start()

    app = falcon.App(middleware=[RequestContext()])
    app.req_options.strip_url_path_trailing_slash = True
    app.add_error_handler(Exception, errors.handle_unexpected)
    app.add_error_handler(InferdError, errors.handle_inferd_error)
    app.set_error_serializer(errors.serialize_http_error)

    app.add_route("/predict", resources.PredictResource(holder, settings) if holder
                  else _Unavailable())
    app.add_route("/health", resources.HealthResource(holder, settings, probe))
    app.add_route("/admin/reload", resources.ReloadResource(runner, settings))
    app.add_route("/admin/rollback", resources.RollbackResource(runner, settings))
    app.add_route("/metrics", resources.MetricsResource())
    docs.add_routes(app, settings)
    return app


def _announce(model: LoadedModel) -> None:
    notify.serving(model.version, model.generation)


class _Unavailable:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_503
        resp.media = {"detail": "Model manager unavailable"}


def _app_from_environment() -> falcon.App:
    settings = load_settings()
    logs.configure(settings.log_level)
    return create_app(settings)


def __getattr__(name: str) -> falcon.App:
    # Built on first access, so importing inferd.app (tests, tools) reads no environment.
    if name == "app":
        globals()["app"] = application = _app_from_environment()
        return application
    raise AttributeError(name)
