"""The Open Inference Protocol's routes in inferd's OpenAPI document
(`inferd.web.openapi` calls `extend`), as data, like the rest of it.

The model name is documented as the one value the server takes (MLFLOW_MODEL_NAME), so
that a client generator, and the fuzzing test, reach the served model; any other
name answers 404 as documented. The binary tensor data extension's bodies are
described in prose: OpenAPI has no way to say "JSON, then raw tensors".
"""

from __future__ import annotations

from typing import Any

from inferd.common.settings import Settings
from inferd.model.inputs import OUTPUTS
from inferd.model.tensors import DATATYPES

_CORRELATION = {"X-Correlation-ID": {"$ref": "#/components/headers/CorrelationId"}}
_HEADER_LENGTH = "Inference-Header-Content-Length"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: dict[str, Any], description: str, **media: dict[str, Any]
            ) -> dict[str, Any]:
    return {"description": description, "headers": _CORRELATION,
            "content": {"application/json": {"schema": schema}, **media}}


def _error(description: str) -> dict[str, Any]:
    return _answer(_ref("V2Error"), description)


_TENSOR_SHAPE = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
_METADATA_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                   "shape": {"type": "array", "items": {"type": "integer", "minimum": -1},
                             "description": "-1: any size (rows)"}},
}
_TENSOR_DATA = {
    "type": "array",
    "description": "the elements in row-major order, flat or nested",
    "items": {"type": ["number", "string", "boolean", "array"]},
}

SCHEMAS: dict[str, Any] = {
    "V2Error": {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "string", "description": "what was wrong"}}},
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"}}},
    },
    "V2Live": {"type": "object", "required": ["live"],
               "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {"type": "object", "required": ["ready"],
                "properties": {"ready": {"type": "boolean"},
                               "error": {"type": "string", "description": "why not"}}},
    "V2MetadataTensor": _METADATA_TENSOR,
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"},
                         "description": "the one version that serves"},
            "platform": {"type": "string", "enum": ["inferd_compiled", "inferd_fallback"]},
            "inputs": {"type": "array", "items": _ref("V2MetadataTensor")},
            "outputs": {"type": "array", "items": _ref("V2MetadataTensor")},
            "default_output": {"type": "string", "enum": list(OUTPUTS),
                               "description": "answered when a request names no output"},
            "classes": {"type": ["array", "null"],
                        "description": "the class of each predict_proba column"},
            "parameters": {"type": "object",
                           "description": "form (compiled or fallback), fallback_reason, "
                                          "estimator, generation"},
        },
    },
    "V2InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "echoed in the answer"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {
                "type": "boolean",
                "description": "send every output with the binary extension"}}},
            "inputs": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": _TENSOR_SHAPE,
                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                    "parameters": {"type": "object", "properties": {"binary_data_size": {
                        "type": "integer", "minimum": 0,
                        "description": "this tensor's bytes follow the JSON header"}}},
                    "data": _TENSOR_DATA,
                },
            }},
            "outputs": {"type": "array", "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": list(OUTPUTS)},
                    "parameters": {"type": "object", "properties": {"binary_data": {
                        "type": "boolean"}}},
                },
            }},
        },
        "example": {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4],
                                "data": [5.1, 3.5, 1.4, 0.2]}]},
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string",
                              "description": "the version of the model that computed them"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string", "enum": list(OUTPUTS)},
                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                    "shape": _TENSOR_SHAPE,
                    "data": _TENSOR_DATA,
                    "parameters": {"type": "object", "properties": {"binary_data_size": {
                        "type": "integer", "minimum": 0}}},
                },
            }},
        },
    },
}

# What /health/'s model gains: the same tensors as the v2 model metadata.
_HEALTH_MODEL = {
    "inputs": {"type": "array", "items": _ref("V2MetadataTensor")},
    "outputs": {"type": "array", "items": _ref("V2MetadataTensor")},
    "default_output": {"type": "string"},
    "classes": {"type": ["array", "null"]},
}


def _get(summary: str, operation_id: str, responses: dict[str, Any],
         parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "operationId": operation_id,
                                 "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _model_routes(base: str, suffix: str, parameters: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    unknown = _error("another model name, or a version that is not the served one")
    infer_body = {
        "required": True,
        "description": "JSON; or, with the binary tensor data extension, the JSON "
                       f"header ({_HEADER_LENGTH} bytes) followed by the raw tensors "
                       "its inputs' binary_data_size announce",
        "content": {"application/json": {"schema": _ref("V2InferRequest")}},
    }
    binary_answer = {"application/octet-stream": {"schema": {
        "type": "string", "description": f"the JSON header ({_HEADER_LENGTH} bytes), "
                                         "then the binary outputs"}}}
    infer_ok = _answer(_ref("V2InferResponse"), "predictions", **binary_answer)
    infer_ok["headers"] = {**_CORRELATION, _HEADER_LENGTH: {
        "schema": {"type": "integer"},
        "description": "with binary outputs: the length of the JSON header"}}
    header = {"name": _HEADER_LENGTH, "in": "header", "required": False,
              "schema": {"type": "integer", "minimum": 1},
              "description": "binary extension: the length of the JSON that starts the body"}
    return {
        base: _get(f"Model metadata{suffix}", f"v2_model_metadata{suffix and '_version'}", {
            "200": _answer(_ref("V2ModelMetadata"), "inputs, outputs, form and classes"),
            "404": unknown, "503": _error("no model is loaded yet")}, parameters),
        f"{base}/ready": _get(f"Is the model ready{suffix}",
                              f"v2_model_ready{suffix and '_version'}", {
            "200": _answer(_ref("V2Ready"), "ready"),
            "400": _error("not ready: no model is loaded (with \"ready\": false)"),
            "404": unknown}, parameters),
        f"{base}/infer": {"post": {
            "summary": f"Predict with the served model{suffix}",
            "operationId": f"v2_infer{suffix and '_version'}",
            "parameters": [*parameters, header],
            "requestBody": infer_body,
            "responses": {
                "200": infer_ok,
                "400": _error("malformed request, bad tensor (shape and data disagree, "
                              "unknown datatype, non-finite values), unknown output"),
                "404": unknown,
                "413": _error("body larger than INFERD_MAX_BODY_BYTES"),
                "415": _error("a compressed body (Content-Encoding)"),
                "503": _error("no model is loaded yet"),
            },
        }},
    }


def paths(settings: Settings) -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "enum": [settings.mlflow_model_name]},
            "description": "MLFLOW_MODEL_NAME; any other name answers 404"}
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string"},
               "description": "the served version; another one answers 404"}
    return {
        "/v2": _get("Server metadata (Open Inference Protocol)", "v2_server_metadata",
                    {"200": _answer(_ref("V2ServerMetadata"), "name, version, extensions")}),
        "/v2/health/live": _get("Is the server live", "v2_live",
                                {"200": _answer(_ref("V2Live"), "live")}),
        "/v2/health/ready": _get("Is the server ready", "v2_ready", {
            "200": _answer(_ref("V2Ready"), "a model serves"),
            "400": _error("not ready: no model is loaded (with \"ready\": false)")}),
        **_model_routes("/v2/models/{name}", "", [name]),
        **_model_routes("/v2/models/{name}/versions/{version}", " (a version)",
                        [name, version]),
    }


def extend(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """`doc` (inferd's OpenAPI document) with the v2 routes and schemas added."""
    doc["paths"].update(paths(settings))
    schemas = doc["components"]["schemas"]
    schemas.update(SCHEMAS)
    info = schemas["ModelInfo"]
    schemas["ModelInfo"] = {**info, "properties": {**info["properties"], **_HEALTH_MODEL}}
    return doc
