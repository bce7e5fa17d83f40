"""MLflow signatures, `pyfunc_predict_fn` and input examples read at slot-write time into
the manifest (`inferd.model.signature`, `inferd.reloading.validate`), on model
directories written by MLflow itself, and models with string columns published through
the real reload path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from inferd.common.errors import BadRequestError, ModelLoadError
from inferd.common.settings import Settings
from inferd.model.inputs import Columns
from inferd.model.loaded import load_slot
from inferd.model.signature import parse_signature
from inferd.reloading.reload import open_reloader
from inferd.reloading.validate import validate_staged
from tests.fakes import colour_pipeline, save_mlflow_model


def iris_frame() -> tuple[pd.DataFrame, Any]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model directories written by mlflow.sklearn.save_model, once for the module."""
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("mlflow-models")
    x, y = iris_frame()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    logistic = LogisticRegression(max_iter=500).fit(x.values, y)
    pipeline, frame = colour_pipeline()
    return {
        "forest": save_mlflow_model(root / "forest", forest, input_example=x.head(3)),
        "logistic": save_mlflow_model(
            root / "logistic", logistic, pyfunc_predict_fn="predict_proba",
            signature=infer_signature(x.values, logistic.predict_proba(x.values))),
        "colours": save_mlflow_model(root / "colours", pipeline, input_example=frame.head(3)),
    }


def staged(model_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(model_dir, tmp_path / "model")
    return tmp_path / "model"


def test_a_column_signature_is_read_into_the_manifest(mlflow_models: dict[str, Path],
                                                      tmp_path: Path) -> None:
    facts = validate_staged(staged(mlflow_models["forest"], tmp_path), True, tmp_path)
    names = list(iris_frame()[0].columns)
    assert facts["signature"] == {
        "kind": "columns",
        "inputs": [{"name": n, "type": "double", "required": True} for n in names],
        "outputs": [{"name": None, "type": "long", "required": True}],
    }
    assert (facts["predict_fn"], facts["classes"], facts["input_kind"], facts["form"]) == (
        "predict", [0, 1, 2], "matrix", "compiled")
    json.dumps(facts)  # the manifest is JSON


def test_a_tensor_signature_and_predict_fn_are_read(mlflow_models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    facts = validate_staged(staged(mlflow_models["logistic"], tmp_path), True, tmp_path)
    assert facts["signature"] == {
        "kind": "tensor",
        "inputs": [{"name": None, "dtype": "float64", "shape": [-1, 4]}],
        "outputs": [{"name": None, "dtype": "float64", "shape": [-1, 3]}],
    }
    assert (facts["predict_fn"], facts["classes"], facts["input_kind"]) == (
        "predict_proba", [0, 1, 2], "matrix")


def test_a_string_pipeline_takes_a_frame_and_is_not_compiled(mlflow_models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    facts = validate_staged(staged(mlflow_models["colours"], tmp_path), True, tmp_path)
    assert [(s["name"], s["type"]) for s in facts["signature"]["inputs"]] == [
        ("colour", "string"), ("size", "double"), ("count", "long")]
    assert (facts["input_kind"], facts["form"], facts["classes"]) == ("frame", "fallback", [0, 1])
    assert "DataFrame" in facts["fallback_reason"]


def rewrite_signature(model_dir: Path, inputs: list[dict[str, Any]]) -> None:
    import yaml

    conf = yaml.safe_load((model_dir / "MLmodel").read_text())
    conf["signature"]["inputs"] = json.dumps(inputs)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(conf))
    (model_dir / "input_example.json").unlink(missing_ok=True)


def test_a_signature_narrower_than_the_model_fails_the_reload(
        mlflow_models: dict[str, Path], tmp_path: Path) -> None:
    model_dir = staged(mlflow_models["logistic"], tmp_path)
    rewrite_signature(model_dir, [{"type": "tensor",
                                   "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}])
    with pytest.raises(ModelLoadError, match="3 inputs but the model was fitted on 4"):
        validate_staged(model_dir, True, tmp_path)


def test_signature_columns_other_than_the_fitted_ones_fail_the_reload(
        mlflow_models: dict[str, Path], tmp_path: Path) -> None:
    model_dir = staged(mlflow_models["forest"], tmp_path)
    names = list(iris_frame()[0].columns)
    shuffled = [names[1], names[0], *names[2:]]
    rewrite_signature(model_dir, [{"type": "double", "name": n} for n in shuffled])
    with pytest.raises(ModelLoadError) as caught:
        validate_staged(model_dir, True, tmp_path)
    assert str(shuffled) in str(caught.value) and str(names) in str(caught.value)


def test_a_predict_fn_inferd_does_not_answer_fails_the_reload(
        mlflow_models: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    model_dir = staged(mlflow_models["logistic"], tmp_path)
    conf = yaml.safe_load((model_dir / "MLmodel").read_text())
    conf["flavors"]["python_function"]["predict_fn"] = "predict_log_proba"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(conf))
    with pytest.raises(ModelLoadError, match="predict_log_proba"):
        validate_staged(model_dir, True, tmp_path)


@pytest.mark.parametrize("raw, message", [
    ({"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}},'
                ' {"type": "double", "name": "x"}]'}, "mix tensors and columns"),
    ({"inputs": '[{"type": "array", "items": {"type": "double"}, "name": "x"}]'},
     "column 'x' has type 'array'"),
    ({"inputs": "not json"}, "not JSON"),
    ({"inputs": '{"type": "double"}'}, "not a list"),
])
def test_a_signature_inferd_cannot_apply_is_a_load_error(raw: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        parse_signature(raw)


def test_no_signature_and_optional_columns() -> None:
    assert parse_signature(None) is None
    assert parse_signature({"inputs": None, "outputs": None}) is None
    parsed = parse_signature({"inputs": '[{"type": "string", "name": "a", "required": false},'
                                        ' {"type": "long", "name": "b"}]'})
    assert parsed == {"kind": "columns", "outputs": None, "inputs": [
        {"name": "a", "type": "string", "required": False},
        {"name": "b", "type": "long", "required": True}]}


def test_a_string_pipeline_publishes_and_serves_through_the_reload_path(
        mlflow_models: dict[str, Path], tmp_path: Path) -> None:
    model_dir = shutil.copytree(mlflow_models["colours"], tmp_path / "source")
    settings = Settings(state_dir=tmp_path / "state", model_source="local", model_path=model_dir)
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    slot = reloader.store.layout.current
    model = load_slot(slot, json.loads((slot / "manifest.json").read_text()), True)
    assert (model.form, model.rules.input_kind) == ("fallback", "frame")
    pipeline, frame = colour_pipeline()
    rows = frame.head(5)
    # Columns in another order, one extra column: matched by name, the extra ignored.
    request = Columns(("count", "extra", "colour", "size"),
                      (rows["count"].tolist(), [1] * 5, rows["colour"].tolist(),
                       rows["size"].tolist()), 5)
    assert model.predict(request) == pipeline.predict(rows).tolist()
    assert model.predict(request, "predict_proba") == pipeline.predict_proba(rows).tolist()
    assert model.classes == [0, 1]
    with pytest.raises(BadRequestError, match="missing required column 'colour'"):
        model.predict(Columns(("size", "count"), ([1.0], [1]), 1))
    with pytest.raises(BadRequestError, match="column 'count' is of type long"):
        model.predict(Columns(("colour", "size", "count"), (["red"], [1.0], ["many"]), 1))


def test_a_model_logged_with_predict_proba_answers_probabilities_by_default(
        mlflow_models: dict[str, Path], tmp_path: Path) -> None:
    from tests.support import app_client

    settings = Settings(state_dir=tmp_path / "state", model_source="local",
                        model_path=mlflow_models["logistic"])
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    client = app_client(settings, runner=reloader)
    x = iris_frame()[0].values[:3]
    expected = LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True)).predict_proba(x)
    resp = client.simulate_post("/predict/", json={"features": x.tolist()})
    assert resp.status_code == 200, resp.text
    assert resp.json["classes"] == [0, 1, 2]
    # Served compiled: the same bits as scikit-learn's own predict_proba.
    assert np.array_equal(np.array(resp.json["predictions"]), expected)
    assert client.simulate_get("/health/").json["model"]["form"] == "compiled"
    labels = client.simulate_post("/predict/", json={"features": x.tolist(), "output": "predict"})
    assert labels.json["predictions"] == [0, 0, 0]


def test_a_plain_file_selecting_columns_by_name_is_a_frame_model(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.fakes import write_model

    x, y = iris_frame()
    by_name = ColumnTransformer([("petals", StandardScaler(), list(x.columns[2:]))])
    pipeline = make_pipeline(by_name, LogisticRegression(max_iter=500)).fit(x, y)
    write_model(tmp_path / "model" / "model.joblib", pipeline)
    facts = validate_staged(tmp_path / "model", True, tmp_path)
    assert (facts["signature"], facts["input_kind"]) == (None, "frame")
    assert facts["feature_names"] == list(x.columns)
    model = load_slot(tmp_path, {**facts, "generation": 1, "files": {}}, True)
    rows = x.values[:3]
    assert model.predict(rows) == pipeline.predict(x.head(3)).tolist()
