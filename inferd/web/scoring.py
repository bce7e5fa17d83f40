"""MLflow's scoring protocol, so that a client of `mlflow models serve` switches to inferd
by changing the URL: `POST /invocations`, `GET /ping`, `GET /version`.

The resources parse (`inferd.web.codecs.scoring`), call the one predict use case and
format; every error on these routes, falcon's own (405, ...) included, answers in
MLflow's shape, `{"error_code": "BAD_REQUEST", "message": "..."}`, through
`inferd.web.errors.ErrorShapes` (app.py). The differences from
`mlflow models serve` kept on purpose are listed in docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

import falcon

from inferd import __version__
from inferd.common.errors import NoModelError
from inferd.usecases.health import HealthCheck
from inferd.usecases.predict import Predict
from inferd.web.body import read_body
from inferd.web.codecs import scoring

# MLflow's error codes by HTTP status (`mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS`);
# a status MLflow has no code for (405, 413, 415) is the client's error, BAD_REQUEST.
_ERROR_CODES = {
    "400": "BAD_REQUEST",
    "404": "ENDPOINT_NOT_FOUND",
    "500": "INTERNAL_ERROR",
    "503": "TEMPORARILY_UNAVAILABLE",
}


def error_body(status: str, message: str) -> dict[str, Any]:
    fallback = "BAD_REQUEST" if int(status[:3]) < 500 else "INTERNAL_ERROR"
    code = _ERROR_CODES.get(status[:3], fallback)
    return {"error_code": code, "message": message}


class InvocationsResource:
    """`POST /invocations`: JSON (`dataframe_split`, `dataframe_records`, `instances`,
    `inputs`) or CSV in; `{"predictions": [...]}` out, computed by the model's default
    output (its `pyfunc_predict_fn`), as `mlflow models serve` answers."""

    def __init__(self, predict: Predict, max_body: int, max_rows: int) -> None:
        self.predict = predict
        self.max_body = max_body
        self.max_rows = max_rows

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.predict.check_available()
        mime = scoring.media_type(req.content_type)
        inputs = scoring.decode(read_body(req, self.max_body), mime, self.max_rows)
        prediction = self.predict(inputs)
        resp.data = scoring.encode(prediction.values)
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("X-Model-Version", prediction.version)


class PingResource:
    """`GET /ping`: 200 while this worker has a model to answer with, else 503."""

    def __init__(self, health: HealthCheck) -> None:
        self.health = health

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self.health()
        if not report.ready:
            raise NoModelError(report.body["details"].get("error") or "no model is loaded")
        # mlflow models serve answers a bare newline, under a JSON content type.
        resp.data = b"\n"
        resp.content_type = falcon.MEDIA_JSON


class VersionResource:
    """`GET /version`: inferd's version, as plain text (MLflow answers its own)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = __version__
        resp.content_type = falcon.MEDIA_TEXT

