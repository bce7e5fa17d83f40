"""The OpenAPI document is well-formed: valid schemas, resolvable references, and the
settings it depends on. (Live answers are checked against it in
tests/integration/test_observability.py.)"""

from __future__ import annotations

import re
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from inferd.common.settings import Settings
from inferd.web import openapi

ERROR_SCHEMAS = {"#/components/schemas/Error", "#/components/schemas/MlflowError",
                 "#/components/schemas/V2Error"}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_schema_is_valid_and_every_reference_resolves(settings: Settings) -> None:
    document = openapi.build(settings)
    orjson.dumps(document)  # serializable as served
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for ref in refs(document):
        assert ref.startswith("#/"), ref
        assert resolve(document, ref) is not None


def test_every_operation_declares_its_errors_and_the_correlation_header(
        settings: Settings) -> None:
    document = openapi.build(settings)
    operation_ids = []
    for path, item in document["paths"].items():
        assert path.startswith("/")
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status)
                assert "X-Correlation-ID" in response["headers"], (path, method, status)
                if status.startswith(("4", "5")) and path != "/health/" and path != "/health":
                    # inferd's own shape, or the protocol's (MLflow's for /invocations)
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"] in ERROR_SCHEMAS, (path, status)
    assert len(operation_ids) == len(set(operation_ids))
    predict = document["paths"]["/predict/"]["post"]["responses"]
    assert {"200", "400", "413", "503"} <= set(predict)


def test_the_admin_security_scheme_names_the_configured_header(make_settings: Any) -> None:
    document = openapi.build(make_settings(admin_token_header="X-Ops-Key"))
    scheme = document["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Ops-Key")
