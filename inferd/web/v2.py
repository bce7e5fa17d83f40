"""The Open Inference Protocol (KServe / Triton "v2") over REST: Falcon resources.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready           200, or 400 while no model serves
    GET  /v2/models/{name}[/versions/{version}]      model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

The one model is named MLFLOW_MODEL_NAME whatever the source; its one version is the
served one. Another name, or another version (only the served model is loaded), is a
404. Errors are `{"error": "..."}` (`error_body`, which app.py gives
`inferd.web.errors.ErrorShapes` for /v2), statuses from the one table in
`inferd.web.errors`. Decoding and encoding are `inferd.web.codecs.v2`.
"""

from __future__ import annotations

from typing import Any

import falcon

from inferd import __version__
from inferd.common.errors import InferdError, ReloadBusyError, ServiceUnavailableError
from inferd.model import tensors
from inferd.model.inputs import ModelInput
from inferd.model.loaded import LoadedModel
from inferd.serving.holder import ModelHolder
from inferd.usecases.predict import Predict, Prediction
from inferd.web.body import read_body
from inferd.web.codecs import v2, v2_binary

PREFIX = "/v2"
SERVER_METADATA = {"name": "inferd", "version": __version__,
                   "extensions": ["binary_tensor_data"]}
# How often an infer request asking for two outputs predicts again when a reload
# lands between them, so that both come from one model version.
_SAME_VERSION_TRIES = 3


def error_body(status: str, message: str) -> dict[str, Any]:
    return {"error": message}


class ServedModel:
    """The model the v2 routes name: MLFLOW_MODEL_NAME, at the version that serves."""

    def __init__(self, holder: ModelHolder | None, name: str) -> None:
        self.holder = holder
        self.name = name

    def check_name(self, name: str) -> None:
        if name != self.name:
            raise falcon.HTTPNotFound(
                description=f"unknown model {name[:100]!r}; this server serves {self.name!r}")

    def check_version(self, requested: str | None, served: str) -> None:
        if requested is not None and requested != served:
            raise falcon.HTTPNotFound(
                description=f"model {self.name!r} has no version {requested[:100]!r} "
                            f"loaded; the served version is {served!r}")

    def get(self, name: str, version: str | None) -> LoadedModel:
        """The serving model, if it is the one named; raises 404, or 503 with none."""
        self.check_name(name)
        if self.holder is None:
            raise ServiceUnavailableError
        model = self.holder.current()  # NoModelError: 503
        self.check_version(version, model.version)
        return model

    def not_ready(self) -> str | None:
        """Why no model can answer now; None when one can."""
        if self.holder is None:
            return ServiceUnavailableError.MESSAGE
        try:
            self.holder.current()
        except InferdError as exc:  # NoModelError: nothing published, or nothing loads
            return str(exc)
        return None


def _ready(resp: falcon.Response, why_not: str | None) -> None:
    # The protocol's readiness is the status: 200 ready, 400 not (with the reason).
    if why_not is None:
        resp.media = {"ready": True}
    else:
        resp.status = falcon.HTTP_400
        resp.media = {"ready": False, "error": f"not ready: {why_not}"}


class ServerMetadataResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = SERVER_METADATA


class LiveResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"live": True}


class ServerReadyResource:
    def __init__(self, served: ServedModel) -> None:
        self.served = served

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _ready(resp, self.served.not_ready())


class ModelReadyResource:
    def __init__(self, served: ServedModel) -> None:
        self.served = served

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str,
               version: str | None = None) -> None:
        self.served.check_name(name)
        why_not = self.served.not_ready()
        if why_not is None and version is not None:
            self.served.get(name, version)  # another version: 404
        _ready(resp, why_not)


class ModelMetadataResource:
    def __init__(self, served: ServedModel) -> None:
        self.served = served

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str,
               version: str | None = None) -> None:
        resp.media = model_metadata(self.served.name, self.served.get(name, version))


def model_metadata(name: str, model: LoadedModel) -> dict[str, Any]:
    info = model.describe()
    parameters = {key: info[key] for key in ("form", "fallback_reason", "estimator",
                                             "generation") if info.get(key) is not None}
    return {"name": name, "versions": [model.version], "platform": f"inferd_{model.form}",
            **tensors.describe(model), "parameters": parameters}


class InferResource:
    def __init__(self, served: ServedModel, predict: Predict, max_body: int,
                 max_rows: int) -> None:
        self.served = served
        self.predict = predict
        self.max_body = max_body
        self.max_rows = max_rows

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str,
                version: str | None = None) -> None:
        self.served.check_name(name)
        self.predict.check_available()
        if req.get_header("Content-Encoding") not in (None, "identity"):
            raise falcon.HTTPUnsupportedMediaType(
                description="compressed request bodies are not supported; send it as is")
        # The body may be the thread's kept buffer (reuse): nothing below keeps a view
        # of it past this request; the tensors' values are copied into the answer.
        request = v2.decode(read_body(req, self.max_body, reuse=True),
                            req.get_header(v2_binary.HEADER), self.max_rows)
        model = self.served.get(name, version)
        inputs = v2.model_input(request, tensors.column_names(model))
        predictions = self._predict(inputs, [o.name for o in request.outputs] or [None])
        served_version = predictions[0].version
        self.served.check_version(version, served_version)  # a reload since `get`
        binary = [o.binary for o in request.outputs] or [None]
        body, header_length = v2.encode(self.served.name, served_version, request.id, [
            v2.Output(p.output, p.values, request.binary_output if b is None else b)
            for p, b in zip(predictions, binary, strict=True)])
        resp.data = body
        resp.set_header("X-Model-Version", served_version)
        if header_length is None:
            resp.content_type = falcon.MEDIA_JSON
        else:
            resp.content_type = v2_binary.MEDIA
            resp.set_header(v2_binary.HEADER, str(header_length))

    def _predict(self, inputs: ModelInput, outputs: list[str | None]) -> list[Prediction]:
        """Each output asked for, all computed by one model version."""
        for _ in range(_SAME_VERSION_TRIES):
            predictions = [self.predict(inputs, output) for output in outputs]
            if len({p.version for p in predictions}) == 1:
                return predictions
        raise ReloadBusyError("the served model changed while this request was being "
                              "predicted, several times; send it again")
