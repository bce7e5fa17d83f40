"""The v2 routes through the whole Falcon app, on a real published slot (an iris forest
from a local file): metadata, readiness, infer in JSON and binary, and the error
shape of every failure under /v2, falcon's own 404 and 405 included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from falcon import testing
from tritonclient.http._utils import _get_inference_request

NAME = "iris-model"  # MLFLOW_MODEL_NAME's default
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
MAX_ROWS = 8


@pytest.fixture
def client(make_client: Callable[..., testing.TestClient]) -> testing.TestClient:
    return make_client(max_rows=MAX_ROWS)


def served_version(client: testing.TestClient) -> str:
    return str(client.simulate_get("/health/").json["model"]["version"])


def infer_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [len(rows), 4],
                        "data": rows}], **extra}


def test_server_metadata_live_and_ready(client: testing.TestClient) -> None:
    assert client.simulate_get("/v2").json == {
        "name": "inferd", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    assert client.simulate_get("/v2/health/live").json == {"live": True}
    assert client.simulate_get("/v2/health/ready").json == {"ready": True}
    assert client.simulate_get(f"/v2/models/{NAME}/ready").status_code == 200
    version = served_version(client)
    assert client.simulate_get(f"/v2/models/{NAME}/versions/{version}/ready").status_code == 200


def test_without_a_model_live_but_not_ready(
        make_client: Callable[..., testing.TestClient]) -> None:
    client = make_client(publish=False)
    assert client.simulate_get("/v2/health/live").status_code == 200
    for path in ("/v2/health/ready", f"/v2/models/{NAME}/ready"):
        resp = client.simulate_get(path)
        assert resp.status_code == 400
        assert resp.json["ready"] is False and "no model is published yet" in resp.json["error"]
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", json=infer_body(ROWS))
    assert resp.status_code == 503 and list(resp.json) == ["error"]


def test_model_metadata_describes_the_slot(client: testing.TestClient) -> None:
    version = served_version(client)
    for path in (f"/v2/models/{NAME}", f"/v2/models/{NAME}/versions/{version}"):
        meta = client.simulate_get(path).json
        assert meta["name"] == NAME and meta["versions"] == [version]
        assert meta["platform"] == "inferd_compiled"
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert meta["outputs"][0]["name"] == "predict"
        assert meta["parameters"]["form"] == "compiled"
    health = client.simulate_get("/health/").json["model"]
    assert (health["inputs"], health["outputs"]) == (meta["inputs"], meta["outputs"])


@pytest.mark.parametrize("path", [
    "/v2/models/other", "/v2/models/other/ready", "/v2/models/other/infer",
    f"/v2/models/{NAME}/versions/999", f"/v2/models/{NAME}/versions/999/ready",
    f"/v2/models/{NAME}/versions/999/infer", "/v2/nothing/here",
])
def test_unknown_model_or_version_is_a_404_in_the_protocols_shape(
        client: testing.TestClient, path: str) -> None:
    if path.endswith("/infer"):
        resp = client.simulate_post(path, json=infer_body(ROWS))
    else:
        resp = client.simulate_get(path)
    assert resp.status_code == 404
    assert list(resp.json) == ["error"]


def test_a_wrong_method_is_a_405_in_the_protocols_shape(client: testing.TestClient) -> None:
    resp = client.simulate_delete(f"/v2/models/{NAME}/infer")
    assert resp.status_code == 405 and list(resp.json) == ["error"]


def test_infer_json_equals_predict(client: testing.TestClient, forests: tuple[Any, Any]
                                   ) -> None:
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", json=infer_body(ROWS, id="r1"))
    assert resp.status_code == 200, resp.text
    answer = resp.json
    assert answer["id"] == "r1" and answer["model_name"] == NAME
    assert answer["model_version"] == resp.headers["X-Model-Version"] == served_version(client)
    (output,) = answer["outputs"]
    expected = forests[0].predict(np.array(ROWS)).tolist()
    assert output == {"name": "predict", "datatype": "INT64", "shape": [3], "data": expected}
    native = client.simulate_post("/predict/", json={"features": ROWS}).json
    assert native["predictions"] == expected


def test_infer_binary_both_ways_with_tritonclient(client: testing.TestClient,
                                                  forests: tuple[Any, Any]) -> None:
    tensor = triton.InferInput("input-0", [3, 4], "FP32")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float32))
    body, length = _get_inference_request([tensor], "", None, 0, False, False, 0, None, None)
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", body=body,
                                headers={"Inference-Header-Content-Length": str(length)})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    result = triton.InferResult.from_response_body(
        resp.content, header_length=int(resp.headers["Inference-Header-Content-Length"]))
    expected = forests[0].predict(np.array(ROWS, dtype=np.float32)).tolist()
    assert result.as_numpy("predict").tolist() == expected


def test_requested_outputs_come_from_one_version(client: testing.TestClient,
                                                 forests: tuple[Any, Any]) -> None:
    body = infer_body(ROWS, outputs=[{"name": "predict_proba"},
                                     {"name": "predict", "parameters": {"binary_data": False}}])
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", json=body)
    proba, labels = resp.json["outputs"]
    assert (proba["name"], proba["shape"], proba["datatype"]) == ("predict_proba", [3, 3], "FP64")
    assert np.reshape(proba["data"], (3, 3)).tolist() == forests[0].predict_proba(
        np.array(ROWS)).tolist()
    assert labels["data"] == forests[0].predict(np.array(ROWS)).tolist()
    assert client.simulate_get(f"/v2/models/{NAME}").json["classes"] == [0, 1, 2]


@pytest.mark.parametrize("body, message", [
    (infer_body([[1.0, 2.0, 3.0]]), "shape holds 4 elements, but 'data' has 3"),
    ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]},
     "each row must have 4 features, got 3"),
    (infer_body(ROWS * 3), "INFERD_MAX_ROWS"),
    ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1e39, 1, 1, 1]}]},
     "too large"),
])
def test_bad_infer_requests_are_400s(client: testing.TestClient, body: dict[str, Any],
                                     message: str) -> None:
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", json=body)
    assert resp.status_code == 400
    assert list(resp.json) == ["error"] and message in resp.json["error"]


@pytest.mark.parametrize("value, status", [(np.inf, 400), (-np.inf, 400), (np.nan, 200)])
def test_the_model_decides_on_non_finite_binary_values(client: testing.TestClient,
                                                       value: float, status: int) -> None:
    # Only the binary extension can carry them. A forest takes a missing value (NaN)
    # as scikit-learn's does, and refuses an infinite one.
    tensor = triton.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([[5.1, value, 1.4, 0.2]]))
    body, length = _get_inference_request([tensor], "", None, 0, False, False, 0, None, None)
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", body=body,
                                headers={"Inference-Header-Content-Length": str(length)})
    assert resp.status_code == status
    if status == 400:
        assert "feature 1 row 0 is infinite" in resp.json["error"]


def test_oversized_and_compressed_bodies(make_client: Callable[..., testing.TestClient]
                                         ) -> None:
    client = make_client(max_body_bytes=64)
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", json=infer_body(ROWS))
    assert resp.status_code == 413 and "INFERD_MAX_BODY_BYTES" in resp.json["error"]
    resp = client.simulate_post(f"/v2/models/{NAME}/infer", body=b"x",
                                headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 415 and list(resp.json) == ["error"]


def test_other_routes_keep_their_error_shape(client: testing.TestClient) -> None:
    assert list(client.simulate_get("/nothing").json) == ["detail"]
    assert list(client.simulate_get("/v2nothing").json) == ["detail"]
