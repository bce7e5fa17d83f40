"""An MLflow model's signature, `pyfunc_predict_fn` and input example, read at slot-write
time into the manifest (`inferd.reloading.validate`), so that a worker never parses an
MLmodel file nor imports MLflow or YAML to apply them.

The manifest's shape, which the protocols' codecs rely on:

    "signature": null, or
        {"kind": "columns",
         "inputs":  [{"name": str, "type": <MLflow DataType name>, "required": bool}, ...],
         "outputs": [...the same...] or null}
        {"kind": "tensor",
         "inputs":  [{"name": str | null, "dtype": <numpy dtype name>, "shape": [-1, 4]}],
         "outputs": [...the same...] or null}
    "predict_fn": the python_function flavor's `predict_fn` ("predict" when absent)

MLflow writes the signature into the MLmodel file as two JSON strings
(`signature: {inputs: '[...]', outputs: '[...]'}`), a column spec as
`{"type": "double", "name": "x", "required": true}` and a tensor spec as
`{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}`
(`mlflow/types/schema.py`, `ColSpec.to_dict` / `TensorSpec.to_dict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.common.errors import ModelLoadError
from inferd.model.inputs import Columns

# MLflow's DataType names (mlflow.types.schema.DataType) a column may have. The first five
# become numbers a float matrix can hold; the others need a DataFrame.
NUMERIC_TYPES = ("double", "float", "long", "integer", "boolean")
COLUMN_TYPES = (*NUMERIC_TYPES, "string", "binary", "datetime")


@dataclass(frozen=True)
class ModelDescription:
    """What an MLflow model directory says about its inputs and outputs."""

    signature: dict[str, Any] | None
    predict_fn: str
    example: Columns | list[list[Any]] | None  # the input example, as a codec would hand it


def describe_model_dir(model_dir: Path) -> ModelDescription:
    """Read `model_dir/MLmodel` (when there is one); raise ModelLoadError for a
    signature inferd cannot apply."""
    conf = _read_mlmodel(model_dir / "MLmodel")
    if conf is None:
        return ModelDescription(None, "predict", None)
    pyfunc = (conf.get("flavors") or {}).get("python_function") or {}
    predict_fn = str(pyfunc.get("predict_fn") or "predict")
    return ModelDescription(parse_signature(conf.get("signature")), predict_fn,
                            read_input_example(model_dir))


def _read_mlmodel(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    import yaml

    try:
        conf = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(conf, dict):
        raise ModelLoadError(f"{path} is not an MLflow model description")
    return conf


def parse_signature(raw: Any) -> dict[str, Any] | None:
    """The MLmodel file's `signature` entry in the manifest's shape (module docstring)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"the MLmodel signature is a {type(raw).__name__}, not a mapping")
    inputs = _specs(raw.get("inputs"), "inputs")
    if not inputs:
        return None
    outputs = _specs(raw.get("outputs"), "outputs")
    kind = _kind(inputs, "inputs")
    return {"kind": kind,
            "inputs": [_spec(s, kind, "inputs") for s in inputs],
            "outputs": ([_spec(s, _kind(outputs, "outputs"), "outputs") for s in outputs]
                        if outputs else None)}


def _specs(text: Any, which: str) -> list[dict[str, Any]]:
    if text is None:
        return []
    try:
        specs = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:
        raise ModelLoadError(f"the MLmodel signature's {which} are not JSON: {exc}") from exc
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ModelLoadError(f"the MLmodel signature's {which} are not a list of specs")
    return specs


def _kind(specs: list[dict[str, Any]], which: str) -> str:
    tensors = sum(1 for s in specs if s.get("type") == "tensor")
    if tensors and tensors != len(specs):
        raise ModelLoadError(f"the MLmodel signature's {which} mix tensors and columns")
    return "tensor" if tensors else "columns"


def _spec(spec: dict[str, Any], kind: str, which: str) -> dict[str, Any]:
    name = spec.get("name")
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ModelLoadError(f"the MLmodel signature's tensor {name!r} has no valid shape")
        return {"name": name, "dtype": str(tensor.get("dtype")), "shape": shape}
    column_type = spec.get("type")
    if column_type not in COLUMN_TYPES:
        # Array, object and map columns (and `any`) are for LLM flavors, not for
        # scikit-learn; serving them would mean guessing at a nested layout.
        raise ModelLoadError(
            f"the MLmodel signature's {which} column {name!r} has type {column_type!r}; "
            f"inferd serves columns of types {', '.join(COLUMN_TYPES)}")
    return {"name": name, "type": column_type, "required": bool(spec.get("required", True))}


def read_input_example(model_dir: Path) -> Columns | list[list[Any]] | None:
    """MLflow's `input_example.json`: a DataFrame in "split" (or "records") orientation
    becomes Columns, a list of rows stays rows; anything else is no example."""
    path = model_dir / "input_example.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("columns"), list) and isinstance(
            data.get("data"), list):
        return columns_from_rows([str(c) for c in data["columns"]], data["data"])
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        names = list(dict.fromkeys(k for r in data for k in r))
        return columns_from_rows(names, [[r.get(n) for n in names] for r in data])
    if isinstance(data, dict):
        data = data.get("inputs", data.get("data"))
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return data
    return None


def columns_from_rows(names: list[str], rows: list[Any]) -> Columns | None:
    if not rows or not all(isinstance(r, list) and len(r) == len(names) for r in rows):
        return None
    return Columns(tuple(names), tuple(zip(*rows, strict=True)), len(rows))


def input_width(signature: dict[str, Any] | None) -> int | None:
    """How many features the signature gives a model, when it says."""
    if signature is None:
        return None
    if signature["kind"] == "columns":
        return len(signature["inputs"])
    shape = signature["inputs"][0]["shape"] if len(signature["inputs"]) == 1 else []
    return shape[1] if len(shape) == 2 and shape[1] > 0 else None


def input_names(signature: dict[str, Any] | None) -> list[str] | None:
    """The signature's column names in order, when it names its columns."""
    if signature is None or signature["kind"] != "columns":
        return None
    names = [spec["name"] for spec in signature["inputs"]]
    return names if all(isinstance(n, str) for n in names) else None


def needs_frame(signature: dict[str, Any] | None) -> bool:
    """Whether a column of the signature cannot be a number in a float matrix."""
    return signature is not None and signature["kind"] == "columns" and any(
        spec["type"] not in NUMERIC_TYPES for spec in signature["inputs"])


def check_agrees(signature: dict[str, Any] | None, n_features: int | None,
                 feature_names: list[str] | None) -> None:
    """Refuse a model whose signature disagrees with what the estimator was fitted on:
    MLflow would fail every request (or, by position, answer for the wrong columns)."""
    width = input_width(signature)
    if width is not None and n_features is not None and width != n_features:
        raise ModelLoadError(
            f"the model signature has {width} inputs but the model was fitted on "
            f"{n_features} features; log the model with a signature of its training data")
    names = input_names(signature)
    if names is not None and feature_names is not None and names != feature_names:
        raise ModelLoadError(
            f"the model signature's columns {names} are not the columns the model was "
            f"fitted on, in that order: {feature_names}")
