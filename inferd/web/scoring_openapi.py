"""The OpenAPI description of MLflow's scoring protocol (`inferd.web.scoring`): its three
paths and their schemas, added to inferd's document by `extend`."""

from __future__ import annotations

from typing import Any

from inferd.common.settings import Settings

_CORRELATION = {"X-Correlation-ID": {"$ref": "#/components/headers/CorrelationId"}}
_ERROR_REF = {"$ref": "#/components/schemas/MlflowError"}
_VALUE = {"description": "a JSON value; the model's signature says which types it takes"}

_SCHEMAS: dict[str, Any] = {
    "MlflowError": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {"type": "string",
                           "description": "MLflow's error code, e.g. BAD_REQUEST"},
            "message": {"type": "string", "description": "what was wrong"},
        },
    },
    "InvocationsResponse": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {
            "type": "array",
            "description": "one prediction a row, from the model's default output (its "
                           "pyfunc_predict_fn): a label or value, or a row of class "
                           "probabilities",
        }},
    },
}


def _invocations_request(settings: Settings) -> dict[str, Any]:
    rows = {"type": "array", "minItems": 1, "maxItems": settings.max_rows}
    return {
        "type": "object",
        "description": "exactly one of the four formats, as `mlflow models serve` takes "
                       "them; `params` is accepted and ignored",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "additionalProperties": False,
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {**rows, "items": {"type": "array", "items": _VALUE}},
                    "index": {"type": "array"},
                },
            },
            "dataframe_records": {**rows, "items": {"type": "object",
                                                    "additionalProperties": _VALUE}},
            "instances": {**rows, "items": _VALUE},
            "inputs": {"oneOf": [{**rows, "items": _VALUE},
                                 {"type": "object", "additionalProperties": _VALUE}]},
            "params": {"type": "object"},
        },
        "oneOf": [{"required": [key]} for key in
                  ("dataframe_split", "dataframe_records", "instances", "inputs")],
        "example": {"dataframe_split": {
            "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                        "petal width (cm)"],
            "data": [[5.1, 3.5, 1.4, 0.2]]}},
    }


def _json(schema: dict[str, Any], description: str,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**_CORRELATION, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR_REF, description)


def _paths() -> dict[str, Any]:
    invocations = {
        "summary": "Predict with the serving model, as `mlflow models serve` does",
        "operationId": "invocations",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InvocationsRequest"}},
            "text/csv": {"schema": {"type": "string",
                                    "description": "a header row of column names, then "
                                                   "one line a row"}},
        }},
        "responses": {
            "200": _json({"$ref": "#/components/schemas/InvocationsResponse"}, "predictions",
                         {"X-Model-Version": {"schema": {"type": "string"},
                                              "description": "version that computed them"}}),
            "400": _error("malformed body, or input the model's signature refuses"),
            "413": _error("body larger than INFERD_MAX_BODY_BYTES"),
            "415": _error("a Content-Type other than application/json or text/csv"),
            "503": _error("no model is loaded yet"),
        },
    }
    return {
        "/invocations": {"post": invocations},
        "/ping": {"get": {
            "summary": "200 while a model serves (MLflow's health check)",
            "operationId": "ping",
            "responses": {"200": {"description": "a model serves; the body is a newline",
                                  "headers": _CORRELATION},
                          "503": _error("no model is loaded yet")},
        }},
        "/version": {"get": {
            "summary": "inferd's version",
            "operationId": "version",
            "responses": {"200": {"description": "the version, as plain text",
                                  "headers": _CORRELATION,
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
    }


def extend(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Add the scoring protocol's paths and schemas to inferd's OpenAPI `document`."""
    document["paths"].update(_paths())
    document["components"]["schemas"].update(
        _SCHEMAS, InvocationsRequest=_invocations_request(settings))
    return document
