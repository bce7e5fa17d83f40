"""The OpenAPI 3.1 description of inferd's HTTP API, served at `/openapi.json`.

Written by hand, as data, because the routes are few and their bodies are the
contract; `tests/integration/test_openapi.py` checks live answers against it, so it
cannot drift from what the server does. OpenAPI 3.1 schemas are JSON Schema 2020-12,
which is what that test validates with.
"""

from __future__ import annotations

from typing import Any

from inferd import __version__
from inferd.common.settings import Settings
from inferd.web import openapi_v2

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_CORRELATION = {"X-Correlation-ID": {"$ref": "#/components/headers/CorrelationId"}}


def _json(schema: dict[str, Any], description: str,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_CORRELATION, **(headers or {})},
        "content": {"application/json": {"schema": schema}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR_REF, description)


def _text(media: str, description: str) -> dict[str, Any]:
    return {"description": description, "headers": _CORRELATION,
            "content": {media: {"schema": {"type": "string"}}}}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string", "description": "what was wrong"}},
    },
    "PredictResponse": {
        "type": "object",
        "required": ["predictions", "model_version"],
        "properties": {
            "predictions": {
                "type": "array",
                "description": "one prediction a row: a class label or a regression value, "
                               "or (output predict_proba) the row's class probabilities",
                "items": {"type": ["number", "string", "boolean", "array"],
                          "items": {"type": "number"}},
            },
            "classes": {
                "type": "array",
                "description": "output predict_proba only: the class of each probability",
                "items": {"type": ["number", "string", "boolean"]},
            },
            "model_version": {"type": "string",
                              "description": "the version of the model that computed them"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "ready", "details", "mlflow", "model", "admin"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "ready": {"type": "boolean", "description": "true while a model serves"},
            "details": {
                "type": "object",
                "required": ["metrics"],
                "properties": {
                    "metrics": {"type": "object",
                                "description": "metrics of the serving model's MLflow run",
                                "additionalProperties": {"type": "number"}},
                    "error": {"type": "string",
                              "description": "why no model, or a newer slot, could be loaded"},
                },
            },
            "mlflow": {
                "type": "object",
                "required": ["status", "server_version", "verified_at", "model_uri"],
                "properties": {
                    "status": {"type": "string"},
                    "server_version": {"type": ["string", "null"]},
                    "verified_at": {"type": ["string", "null"], "format": "date-time",
                                    "description": "last good check, ISO-8601 UTC"},
                    "checked_at": {"type": ["string", "null"], "format": "date-time",
                                   "description": "last check, ISO-8601 UTC"},
                    "model_uri": {"type": ["string", "null"]},
                },
            },
            "model": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ModelInfo"}],
            },
            "admin": {
                "type": "object",
                "required": ["auth"],
                "properties": {"auth": {"type": "string", "enum": ["enabled", "disabled"]}},
            },
        },
    },
    "ModelInfo": {
        "type": "object",
        "required": ["version", "generation", "form"],
        "properties": {
            "name": {"type": ["string", "null"]},
            "version": {"type": "string"},
            "stage": {"type": ["string", "null"]},
            "alias": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "uri": {"type": ["string", "null"]},
            "run_id": {"type": ["string", "null"]},
            "generation": {"type": "integer", "minimum": 1},
            "format": {"type": ["string", "null"]},
            "form": {"type": "string", "enum": ["compiled", "fallback"]},
            "fallback_reason": {"type": ["string", "null"],
                                "description": "why a fallback slot has no compiled form"},
            "estimator": {"type": "string"},
            "n_features": {"type": ["integer", "null"]},
            "published_at": {"type": ["string", "number", "null"]},
            "loaded_at": {"type": ["string", "number", "null"]},
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": ["status", "detail", "version", "stage"],
        "properties": {
            "status": {"type": "string", "enum": ["reloaded", "noop"]},
            "detail": {"type": "string"},
            "version": {"type": ["string", "null"]},
            "stage": {"type": ["string", "null"],
                      "description": "the stage or alias the version was chosen by"},
        },
    },
}


def _predict_request(settings: Settings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["features"],
        "properties": {
            "features": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_rows,
                "description": "rows of numeric features, each as wide as the serving model "
                               "expects (its `n_features` in /health/); at most "
                               "INFERD_MAX_ROWS rows and INFERD_MAX_BODY_BYTES bytes",
                "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            },
            "output": {
                "type": ["string", "null"],
                "enum": ["predict", "predict_proba", None],
                "description": "what to answer: labels or values (predict), or class "
                               "probabilities with a `classes` list (predict_proba); absent, "
                               "the model's default (its MLflow pyfunc_predict_fn)",
            },
        },
        "example": {"features": [[5.1, 3.5, 1.4, 0.2]]},
    }


def _predict_operation() -> dict[str, Any]:
    return {
        "summary": "Predict one or more rows with the serving model",
        "operationId": "predict",
        "requestBody": {
            "required": True,
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        },
        "responses": {
            "200": _json({"$ref": "#/components/schemas/PredictResponse"}, "predictions",
                         {"X-Model-Version": {"schema": {"type": "string"},
                                              "description": "version that computed them"}}),
            "400": _error("malformed JSON, wrong shape or feature count, non-numeric or "
                          "non-finite values, an unknown output, or predict_proba asked of "
                          "a model without classes"),
            "413": _error("body larger than INFERD_MAX_BODY_BYTES"),
            "503": _error("no model is loaded yet"),
        },
    }


def _health_operation() -> dict[str, Any]:
    health = {"$ref": "#/components/schemas/Health"}
    return {
        "summary": "Readiness, the serving model and the registry's state",
        "operationId": "health",
        "responses": {"200": _json(health, "a model serves"),
                      "503": _json(health, "no model is loaded (same shape, ready false)")},
    }


def _admin_operation(summary: str, operation_id: str,
                     extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "security": [{"adminToken": []}],
        "responses": {
            "200": _json({"$ref": "#/components/schemas/ReloadResult"}, "done"),
            "403": _error("missing or wrong admin token"),
            "500": _error("Reload failed: <why>; the previous model keeps serving"),
            "503": _error("model manager unavailable, or another reload holds the lock"),
            **extra,
        },
    }


def build(settings: Settings) -> dict[str, Any]:
    predict = _predict_operation()
    health = _health_operation()
    return openapi_v2.extend({
        "openapi": "3.1.0",
        "info": {
            "title": "inferd",
            "version": __version__,
            "description": "Serve scikit-learn and MLflow models with atomic hot reload.",
        },
        "paths": {
            "/predict/": {"post": predict},
            "/predict": {"post": {**predict, "operationId": "predict_no_slash"}},
            "/health/": {"get": health},
            "/health": {"get": {**health, "operationId": "health_no_slash"}},
            "/admin/reload": {"post": _admin_operation(
                "Fetch, validate and publish the source's current model", "reload", {})},
            "/admin/rollback": {"post": _admin_operation(
                "Serve the previous slot's model again", "rollback",
                {"409": _error("no earlier slot holds a different model")})},
            "/metrics": {"get": {
                "summary": "Prometheus metrics, summed over all workers",
                "operationId": "metrics",
                "responses": {"200": _text("text/plain", "Prometheus text format")},
            }},
            "/openapi.json": {"get": {
                "summary": "This document", "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }},
            "/docs": {"get": {
                "summary": "Swagger UI, served offline", "operationId": "swagger_ui",
                "responses": {"200": _text("text/html", "HTML page")},
            }},
            "/redoc": {"get": {
                "summary": "ReDoc, served offline", "operationId": "redoc",
                "responses": {"200": _text("text/html", "HTML page")},
            }},
        },
        "components": {
            "schemas": {**_SCHEMAS, "PredictRequest": _predict_request(settings)},
            "headers": {"CorrelationId": {
                "description": "the request's X-Correlation-ID or X-Request-ID, else a new id",
                "schema": {"type": "string"},
            }},
            "securitySchemes": {"adminToken": {
                "type": "apiKey", "in": "header", "name": settings.admin_token_header,
                "description": "ADMIN_API_TOKEN; admin routes are open when it is unset",
            }},
        },
    }, settings)
