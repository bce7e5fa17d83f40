"""v2 requests to MLflow models with signatures, through the whole app: one tensor a
named column (MLServer's pandas codec), in JSON and in binary, checked against the
signature as every protocol does; and a model logged with `pyfunc_predict_fn`
answering with that output by default."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from falcon import testing
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tritonclient.http._utils import _get_inference_request

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from tests.fakes import colour_pipeline, save_mlflow_model
from tests.support import app_client

NAME = "iris-model"  # MLFLOW_MODEL_NAME's default
ROWS = 5


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("v2-mlflow-models")
    pipeline, frame = colour_pipeline()
    x, y = load_iris(return_X_y=True)
    logistic = LogisticRegression(max_iter=500).fit(x, y)
    return {"colours": save_mlflow_model(root / "colours", pipeline, input_example=frame.head(3)),
            "proba": save_mlflow_model(root / "proba", logistic, pyfunc_predict_fn="predict_proba",
                                 signature=infer_signature(x, logistic.predict_proba(x)))}


@pytest.fixture
def serve(tmp_path: Path, model_dirs: dict[str, Path]) -> Callable[[str], testing.TestClient]:
    def make(which: str) -> testing.TestClient:
        source = shutil.copytree(model_dirs[which], tmp_path / which)
        settings = Settings(state_dir=tmp_path / "state", model_source="local",
                            model_path=source)
        reloader = open_reloader(settings)
        assert reloader.run().status == "reloaded"
        return app_client(settings, runner=reloader)

    return make


def column_inputs(frame: Any) -> list[dict[str, Any]]:
    return [
        {"name": "count", "datatype": "INT64", "shape": [ROWS], "data": frame["count"].tolist()},
        {"name": "colour", "datatype": "BYTES", "shape": [ROWS, 1],
         "data": frame["colour"].tolist()},
        {"name": "size", "datatype": "FP64", "shape": [ROWS], "data": frame["size"].tolist()},
    ]


def test_metadata_lists_the_signature_columns(serve: Callable[[str], testing.TestClient]
                                              ) -> None:
    meta = serve("colours").simulate_get(f"/v2/models/{NAME}").json
    assert meta["platform"] == "inferd_fallback"
    assert meta["inputs"] == [{"name": "colour", "datatype": "BYTES", "shape": [-1]},
                              {"name": "size", "datatype": "FP64", "shape": [-1]},
                              {"name": "count", "datatype": "INT64", "shape": [-1]}]
    assert meta["classes"] == [0, 1]


def test_named_column_tensors_in_any_order_in_json(serve: Callable[[str], testing.TestClient]
                                                   ) -> None:
    pipeline, frame = colour_pipeline()
    rows = frame.head(ROWS)
    body = {"inputs": column_inputs(rows),
            "outputs": [{"name": "predict_proba"}, {"name": "predict"}]}
    resp = serve("colours").simulate_post(f"/v2/models/{NAME}/infer", json=body)
    assert resp.status_code == 200, resp.text
    proba, labels = resp.json["outputs"]
    assert labels["data"] == pipeline.predict(rows).tolist()
    assert proba["shape"] == [ROWS, 2]
    assert np.allclose(np.reshape(proba["data"], (ROWS, 2)), pipeline.predict_proba(rows))


def test_named_column_tensors_in_binary(serve: Callable[[str], testing.TestClient]) -> None:
    pipeline, frame = colour_pipeline()
    rows = frame.head(ROWS)
    tensors = []
    for name, datatype in (("colour", "BYTES"), ("size", "FP64"), ("count", "INT64")):
        values = rows[name].to_numpy()
        tensor = triton.InferInput(name, [ROWS], datatype)
        tensor.set_data_from_numpy(values.astype(object) if datatype == "BYTES" else values)
        tensors.append(tensor)
    body, length = _get_inference_request(tensors, "", None, 0, False, False, 0, None, None)
    resp = serve("colours").simulate_post(
        f"/v2/models/{NAME}/infer", body=body,
        headers={"Inference-Header-Content-Length": str(length)})
    assert resp.status_code == 200, resp.text
    result = triton.InferResult.from_response_body(
        resp.content, header_length=int(resp.headers["Inference-Header-Content-Length"]))
    assert result.as_numpy("predict").tolist() == pipeline.predict(rows).tolist()


@pytest.mark.parametrize("drop, change, message", [
    ("colour", None, "missing required column 'colour'"),
    (None, ("count", "BYTES", ["many"] * ROWS), "column 'count' is of type long"),
])
def test_the_signature_refuses_what_mlflow_would(serve: Callable[[str], testing.TestClient],
                                                 drop: str | None, change: Any,
                                                 message: str) -> None:
    _, frame = colour_pipeline()
    inputs = [i for i in column_inputs(frame.head(ROWS)) if i["name"] != drop]
    if change is not None:
        name, datatype, data = change
        inputs = [i if i["name"] != name else {**i, "datatype": datatype, "data": data}
                  for i in inputs]
    resp = serve("colours").simulate_post(f"/v2/models/{NAME}/infer", json={"inputs": inputs})
    assert resp.status_code == 400 and message in resp.json["error"]


def test_a_predict_fn_model_answers_predict_proba_by_default(
        serve: Callable[[str], testing.TestClient]) -> None:
    client = serve("proba")
    meta = client.simulate_get(f"/v2/models/{NAME}").json
    assert meta["default_output"] == "predict_proba"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4],
                        "data": [5.1, 3.5, 1.4, 0.2]}]}
    (output,) = client.simulate_post(f"/v2/models/{NAME}/infer", json=body).json["outputs"]
    assert (output["name"], output["shape"]) == ("predict_proba", [1, 3])
