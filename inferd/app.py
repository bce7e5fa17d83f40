"""Composition root of a worker: `app` is what gunicorn serves (`inferd.app:app`).

`create_app(service)` wires the use cases of a `WorkerService` into Falcon routes and
nothing else: it starts no thread and reads no environment. Building the service and
starting its threads is the caller's choice:

- under inferd's gunicorn hooks, the master builds the service and the app once,
  before it forks (`serve_prebuilt`, from `inferd.gunicorn_conf`), and each worker
  starts the service's threads after the fork;
- otherwise `app` is built on first access, in each worker: the service opened from
  the environment and started;
- tests open a service with their own reload runner and leave it unstarted.
"""

from __future__ import annotations

from typing import Any

import falcon

from inferd.common import logs
from inferd.common.settings import load_settings
from inferd.server import inline
from inferd.serving.holder import ModelHolder
from inferd.serving.service import WorkerService
from inferd.usecases.admin import Admin
from inferd.usecases.health import HealthCheck
from inferd.usecases.predict import Predict
from inferd.web import docs, errors, resources, scoring, v2
from inferd.web.middleware import RequestContext
from inferd.web.origin import AdminOriginGuard


def create_app(service: WorkerService) -> falcon.App:
    settings = service.settings
    middleware: list[Any] = [
        RequestContext(),
        AdminOriginGuard(token_configured=settings.admin_token is not None)]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    # Each protocol's routes answer errors in its own shape; the rest {"detail": ...}.
    errors.ErrorShapes({v2.PREFIX: v2.error_body, "/invocations": scoring.error_body,
                        "/ping": scoring.error_body, "/version": scoring.error_body}
                       ).install(app)

    admin = Admin(service.runner, settings)
    predict, health = Predict(service.holder), HealthCheck(service)
    app.add_route("/predict", resources.PredictResource(
        predict, settings.max_body_bytes, settings.max_rows))
    app.add_route("/health", resources.HealthResource(health, admin,
                                                      settings.admin_token_header))
    app.add_route("/admin/reload", resources.ReloadResource(admin, settings.admin_token_header))
    app.add_route("/admin/rollback",
                  resources.RollbackResource(admin, settings.admin_token_header))
    app.add_route("/metrics", resources.MetricsResource())
    app.add_route("/invocations", scoring.InvocationsResource(
        predict, settings.max_body_bytes, settings.max_rows))
    app.add_route("/ping", scoring.PingResource(health))
    app.add_route("/version", scoring.VersionResource())
    served = v2.ServedModel(service.holder, settings.mlflow_model_name)
    app.add_route("/v2", v2.ServerMetadataResource())
    app.add_route("/v2/health/live", v2.LiveResource())
    app.add_route("/v2/health/ready", v2.ServerReadyResource(served))
    for model in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(model, v2.ModelMetadataResource(served))
        app.add_route(f"{model}/ready", v2.ModelReadyResource(served))
        app.add_route(f"{model}/infer", v2.InferResource(
            served, predict, settings.max_body_bytes, settings.max_rows))
    docs.add_routes(app, settings)
    inline.answer_inline_when(quick_routes(service.holder))
    return app


_PREDICTIONS = frozenset({"/predict", "/predict/", "/invocations"})
# /ping and readiness ask the holder for the model, as a prediction does.
_PROBES = frozenset({"/ping", "/v2/health/ready"})


def quick_routes(holder: ModelHolder | None) -> inline.QuickRoute:
    """The requests a worker answers on its main thread (`inferd.server.inline`):
    liveness, and predictions and probes while a compiled model serves and no load is
    due. A fallback model's library may take milliseconds and a load longer, which the
    pool's threads should spend; reloads, metrics and `/health/` (it may read the
    refresh leader's files) go to the pool too."""

    def quick(head: inline.RequestHead) -> bool:
        if head.path == "/v2/health/live":
            return True
        if head.path in _PROBES:
            asks_model = head.method in ("GET", "HEAD")
        else:
            asks_model = head.method == "POST" and (head.path in _PREDICTIONS or (
                head.path.startswith("/v2/models/") and head.path.endswith("/infer")))
        return asks_model and holder is not None and holder.serves_compiled()

    return quick


def _app_from_environment() -> falcon.App:
    settings = load_settings()
    logs.configure(settings.log_level)
    return create_app(WorkerService.open(settings).start())


def serve_prebuilt(service: WorkerService) -> falcon.App:
    """Make `create_app(service)` the `app` gunicorn serves: the master's, built before
    it forks, so its objects are shared by every worker rather than built by each."""
    globals()["app"] = application = create_app(service)
    return application


def __getattr__(name: str) -> falcon.App:
    # Built on first access, so importing inferd.app (tests, tools) reads no environment.
    if name == "app":
        globals()["app"] = application = _app_from_environment()
        return application
    raise AttributeError(name)
