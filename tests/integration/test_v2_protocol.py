"""The Open Inference Protocol (v2) against a real 2-worker gunicorn, with two
independent clients: Triton's `tritonclient[http]` (binary tensors by default) and the
protocol's own OpenAPI client, `open-inference-openapi`. KServe's `kserve` package
installs in a virtualenv of its own, but not beside inferd: it pins pandas below 3
and protobuf below 7 and pulls in the Kubernetes client (docs/protocols.md).

One server for the module, serving an iris forest from a local file; the last test
reloads it under v2 load (and leaves another model behind).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis.strategies as st
import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from open_inference.openapi import InferenceRequest, RequestInput
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.core.api_error import ApiError
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import InferenceServerException

from tests.fakes import ConstantModel, iris_forest, write_model
from tests.integration.servers import (
    HTTP_TIMEOUT,
    IRIS_ROWS,
    InferdServer,
    start_local,
    stop_inferd,
)

pytestmark = pytest.mark.integration

NAME = "iris-v2"
TOKEN = "v2-secret"
ROWS = np.array(IRIS_ROWS * 3)  # 9 rows


@pytest.fixture(scope="module")
def forest() -> Any:
    return iris_forest(n_estimators=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, forest: Any) -> Iterator[InferdServer]:
    srv = start_local(tmp_path_factory.mktemp("v2"), forest, admin_token=TOKEN,
                      MLFLOW_MODEL_NAME=NAME)
    yield srv
    stop_inferd(srv)


@pytest.fixture
def client(server: InferdServer) -> Iterator[triton.InferenceServerClient]:
    tc = triton.InferenceServerClient(server.url.removeprefix("http://"),
                                      network_timeout=HTTP_TIMEOUT)
    yield tc
    tc.close()


def served_version(server: InferdServer) -> str:
    return str(server.health().json()["model"]["version"])


def predict_answer(server: InferdServer, rows: np.ndarray) -> list[Any]:
    resp = server.predict(rows.tolist())
    assert resp.status_code == 200, resp.text
    return list(resp.json()["predictions"])


def test_tritonclient_sees_a_live_ready_server_and_its_model(
        server: InferdServer, client: triton.InferenceServerClient) -> None:
    version = served_version(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME, version)
    assert not client.is_model_ready("other") and not client.is_model_ready(NAME, "0")
    assert client.get_server_metadata() == {"name": "inferd", "version": "0.1.0",
                                            "extensions": ["binary_tensor_data"]}
    meta = client.get_model_metadata(NAME, version)
    assert (meta["name"], meta["versions"]) == (NAME, [version])
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"][0]["name"] == "predict"
    assert meta["parameters"]["form"] == "compiled"


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_equals_predict(server: InferdServer,
                                           client: triton.InferenceServerClient,
                                           binary: bool, datatype: str) -> None:
    rows = ROWS.astype(triton.triton_to_np_dtype(datatype))
    tensor = triton.InferInput("input-0", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    # binary: no outputs named, so tritonclient asks for all of them in binary
    outputs = None if binary else [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(NAME, [tensor], outputs=outputs, request_id="r-1")
    answer = result.get_response()
    assert answer["model_version"] == served_version(server)
    assert answer["id"] == "r-1"
    assert ("data" in answer["outputs"][0]) is not binary
    assert result.as_numpy("predict").tolist() == predict_answer(server, rows)


def test_large_binary_requests_one_after_another_each_get_their_own_answer(
        server: InferdServer, forest: Any, client: triton.InferenceServerClient) -> None:
    # 10 000 rows (320 kB) come in a request thread's kept buffer, which the thread's
    # next request overwrites: each answer must still be its own rows'.
    generator = np.random.default_rng(7)
    for _ in range(6):
        rows = generator.uniform(0.0, 8.0, (10_000, 4))
        tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=True)
        result = client.infer(NAME, [tensor])
        assert result.as_numpy("predict").tolist() == forest.predict(rows).tolist()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_requested_outputs(server: InferdServer, forest: Any,
                                        client: triton.InferenceServerClient,
                                        binary: bool) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    result = client.infer(NAME, [tensor], outputs=[
        triton.InferRequestedOutput("predict_proba", binary_data=binary)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]
    assert result.as_numpy("predict_proba").tolist() == forest.predict_proba(ROWS).tolist()
    assert client.get_model_metadata(NAME)["classes"] == [0, 1, 2]


def test_tritonclient_errors(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([IRIS_ROWS[0]]))
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("other", [tensor])
    assert unknown.value.status() == "404" and "unknown model 'other'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as version:
        client.infer(NAME, [tensor], model_version="0")
    assert version.value.status() == "404"
    narrow = triton.InferInput("input-0", [1, 3], "FP64")
    narrow.set_data_from_numpy(np.array([IRIS_ROWS[0][:3]]))
    with pytest.raises(InferenceServerException) as shape:
        client.infer(NAME, [narrow])
    assert shape.value.status() == "400"
    assert "each row must have 4 features, got 3" in shape.value.message()


@pytest.fixture
def oip(server: InferdServer) -> Iterator[OpenInferenceClient]:
    # Its own httpx client, so that its keep-alive connection is closed after the test.
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        yield OpenInferenceClient(base_url=server.url, httpx_client=http)


def test_the_open_inference_client_agrees(server: InferdServer,
                                          oip: OpenInferenceClient) -> None:
    oip.check_server_liveness()
    oip.check_server_readiness()
    oip.check_model_readiness(NAME)
    assert oip.read_server_metadata().extensions == ["binary_tensor_data"]
    meta = oip.read_model_metadata(NAME)
    assert meta.inputs is not None and meta.inputs[0].shape == [-1, 4]
    request = InferenceRequest(inputs=[RequestInput(
        name="input-0", shape=list(ROWS.shape), datatype="FP64",
        data=ROWS.tolist())])  # nested rows, as the client's TensorData allows
    answer = oip.model_infer(NAME, request=request)
    assert answer.model_version == served_version(server)
    assert [int(v) for v in answer.outputs[0].data.__root__] == predict_answer(server, ROWS)
    with pytest.raises(ApiError) as unknown:  # the client names 400s only, as Triton's
        oip.read_model_metadata("other")
    assert unknown.value.status_code == 404


# -- fuzzed bodies on the wire -------------------------------------------------------------


def _framed(datatype: str, shape: list[int], tail: bytes, declared: int) -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": [{"name": "input-0", "datatype": datatype, "shape": shape,
                                       "parameters": {"binary_data_size": declared}}],
                           "parameters": {"binary_data_output": True}})
    return header + tail, str(len(header))


BINARY_BODIES = (
    st.tuples(st.binary(max_size=300), st.none() | st.integers(-2, 320).map(str))
    | st.builds(_framed, st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "FP16"]),
                st.lists(st.integers(0, 6), min_size=1, max_size=3),
                st.binary(max_size=200), st.integers(0, 220))
)


@given(BINARY_BODIES)
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_binary_body_gets_a_json_4xx_or_an_answer(server: InferdServer,
                                                      framed: tuple[bytes, str | None]) -> None:
    body, header = framed
    headers = {"Connection": "close"} | ({} if header is None else {
        "Inference-Header-Content-Length": header})
    resp = requests.post(f"{server.url}/v2/models/{NAME}/infer", data=body, headers=headers,
                         timeout=HTTP_TIMEOUT)
    assert resp.status_code in (200, 400), (body[:80], header, resp.status_code, resp.text)
    if resp.status_code == 400:
        assert list(resp.json()) == ["error"]


# -- a reload under v2 load -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | None
    version: str | None
    values: tuple[Any, ...] = ()
    error: str | None = None


def _v2_bodies() -> list[tuple[bytes, dict[str, str]]]:
    """One JSON and one binary (tritonclient-built) infer body for the iris rows."""
    rows = np.array(IRIS_ROWS)
    json_tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    json_tensor.set_data_from_numpy(rows, binary_data=False)
    binary_tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    binary_tensor.set_data_from_numpy(rows)
    bodies = []
    for tensor in (json_tensor, binary_tensor):
        body, length = _get_inference_request([tensor], "", None, 0, False, False, 0, None,
                                              None)
        bodies.append((body, {} if length is None else {
            "Inference-Header-Content-Length": str(length)}))
    return bodies


def _infer(session: requests.Session, url: str, body: bytes,
           headers: dict[str, str]) -> Answer:
    try:
        resp = session.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        return Answer(None, None, error=repr(exc))
    if resp.status_code != 200:
        return Answer(resp.status_code, None, error=resp.text[:200])
    length = resp.headers.get("Inference-Header-Content-Length")
    result = triton.InferResult.from_response_body(
        resp.content, header_length=None if length is None else int(length))
    return Answer(200, result.get_response()["model_version"],
                  tuple(result.as_numpy("predict").tolist()))


def _load(url: str, stop: threading.Event, answers: list[Answer], max_seconds: float,
          max_requests: int) -> None:
    bodies = _v2_bodies()
    deadline = time.monotonic() + max_seconds
    with requests.Session() as session:
        for i in range(max_requests):
            if stop.is_set() or time.monotonic() > deadline:
                return
            answers.append(_infer(session, url, *bodies[i % 2]))


def test_reload_under_v2_load_fails_nothing_and_names_the_computing_version(
        server: InferdServer, forest: Any) -> None:
    # The forest predicts [0, 2, 1] on the iris rows, the constant model [7, 7, 7]: an
    # answer's values tell which model computed it. (One reload: each takes seconds.)
    predicts = {served_version(server): tuple(forest.predict(np.array(IRIS_ROWS)).tolist())}

    def reload_to(model: Any) -> None:
        assert server.model_path is not None
        write_model(server.model_path, model)
        resp = server.admin("reload")
        assert resp.status_code == 200 and resp.json()["status"] == "reloaded", resp.text
        predicts[resp.json()["version"]] = tuple(model.predict(np.array(IRIS_ROWS)).tolist())

    answers: list[Answer] = []
    stop = threading.Event()
    url = f"{server.url}/v2/models/{NAME}/infer"
    threads = [threading.Thread(target=_load, args=(url, stop, answers, 30.0, 3000),
                                daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for then in (lambda: reload_to(ConstantModel(7)), lambda: None):
            seen = len(answers)
            while len(answers) < seen + 50 and all(t.is_alive() for t in threads):
                time.sleep(0.02)
            then()
    finally:
        stop.set()
        for thread in threads:
            thread.join(HTTP_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads)

    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"
    wrong = [a for a in answers if a.values != predicts.get(a.version or "")]
    assert not wrong, f"answers not computed by the version they name: {wrong[:3]}"
    assert len(predicts) == 2 and {a.version for a in answers} == set(predicts)
