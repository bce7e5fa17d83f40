"""Falcon resources: parse, call one use case, format. No model logic and no status
decisions here: errors go to the one table in `inferd.web.errors`."""

from __future__ import annotations

import falcon
import orjson

from inferd.common import metrics
from inferd.usecases.admin import Admin, Caller
from inferd.usecases.health import HealthCheck
from inferd.usecases.predict import Predict
from inferd.web import errors
from inferd.web.body import read_body
from inferd.web.codecs import native


class PredictResource:
    """`POST /predict/`: inferd's own protocol (`inferd.web.codecs.native`)."""

    def __init__(self, predict: Predict, max_body: int, max_rows: int) -> None:
        self.predict = predict
        self.max_body = max_body
        self.max_rows = max_rows

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.predict.check_available()
        rows, output = native.decode_request(read_body(req, self.max_body), self.max_rows)
        prediction = self.predict(rows, output)
        resp.data = native.encode(prediction.values, prediction.version, prediction.classes)
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("X-Model-Version", prediction.version)


class HealthResource:
    def __init__(self, health: HealthCheck) -> None:
        self.health = health

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self.health()
        resp.status = errors.HEALTH_STATUS[report.ready]
        resp.data = orjson.dumps(report.body)
        resp.content_type = falcon.MEDIA_JSON


class _AdminResource:
    def __init__(self, admin: Admin, token_header: str) -> None:
        self.admin = admin
        self.token_header = token_header

    def _caller(self, req: falcon.Request) -> Caller:
        return Caller(token=req.get_header(self.token_header), remote_addr=req.remote_addr,
                      forwarded_for=req.get_header("X-Forwarded-For"))


class ReloadResource(_AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.admin.reload(self._caller(req)).body()


class RollbackResource(_AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.admin.rollback(self._caller(req)).body()


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = metrics.exposition()
