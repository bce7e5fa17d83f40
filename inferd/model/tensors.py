"""A served model seen as tensors: the Open Inference Protocol's datatypes, and the
inputs and outputs a model takes and gives in them.

Used by the v2 codec (`inferd.web.codecs.v2`) to turn tensors into what the predict use
case takes, and by the v2 model metadata and `/health/` (`describe`) to say what the
serving slot expects: from the MLflow signature in the slot's manifest when the model
has one, else from the model itself (its feature count and classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.loaded import LoadedModel

# The protocol's fixed-size datatypes and the little-endian numpy dtype of each: the
# binary tensor data extension sends tensors little-endian, in these widths.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
# BYTES is the one variable-size datatype: strings (a named string column).
DATATYPES = (*NUMPY_DTYPES, "BYTES")

# MLflow's column types (mlflow.types.DataType names) as v2 datatypes.
_MLFLOW_TYPES = {
    "double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
    "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES",
}
# numpy's dtype kinds (an MLflow tensor spec names a numpy dtype) as v2 datatypes.
_KINDS = {"b": "BOOL", "U": "BYTES", "S": "BYTES", "O": "BYTES"}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype (BYTES for strings and objects)."""
    if dtype.kind in _KINDS:
        return _KINDS[dtype.kind]
    for name, candidate in NUMPY_DTYPES.items():
        if candidate.kind == dtype.kind and candidate.itemsize == dtype.itemsize:
            return name
    return "BYTES"


def _value_datatype(value: Any) -> str:
    """The datatype of a JSON-like scalar (a class label)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    return "FP64" if isinstance(value, float) else "BYTES"


def column_names(model: LoadedModel) -> frozenset[str]:
    """The input columns the model takes by name (its signature's, or the columns it
    was fitted on); empty for a model that takes positional features only."""
    return frozenset(str(spec["name"]) for spec in model.rules.named_columns or ())


def _signature_tensors(specs: list[dict[str, Any]], kind: str,
                       default_name: str) -> list[dict[str, Any]]:
    tensors = []
    for i, spec in enumerate(specs):
        name = spec.get("name") or f"{default_name}-{i}"
        if kind == "columns":
            tensors.append({"name": name, "datatype": _MLFLOW_TYPES.get(
                str(spec.get("type")), "BYTES"), "shape": [-1]})
        else:
            shape = [int(d) for d in spec.get("shape") or (-1,)]
            tensors.append({"name": name, "datatype": datatype_of(np.dtype(
                str(spec.get("dtype") or "float64"))), "shape": shape})
    return tensors


def _inputs(model: LoadedModel) -> list[dict[str, Any]]:
    signature = model.manifest.get("signature") or {}
    if signature.get("inputs"):
        return _signature_tensors(signature["inputs"], signature.get("kind", "tensor"),
                                  "input")
    if model.rules.named_columns:  # fitted on named columns, logged without a signature
        return _signature_tensors(model.rules.named_columns, "columns", "input")
    width = model.n_features if model.n_features is not None else -1
    return [{"name": "input-0", "datatype": "FP64", "shape": [-1, width]}]


def _outputs(model: LoadedModel) -> list[dict[str, Any]]:
    classes = model.classes
    predict = {"name": "predict", "shape": [-1],
               "datatype": _value_datatype(classes[0]) if classes else "FP64"}
    outputs = [predict]
    if classes:
        outputs.append({"name": "predict_proba", "datatype": "FP64",
                        "shape": [-1, len(classes)]})
    return outputs


def describe(model: LoadedModel) -> dict[str, Any]:
    """What the model takes and gives, as v2 tensors, and its classes.

    `inputs`: one entry per column of a column signature (or of the columns the model
    was fitted on), the tensors of a tensor signature, else one FP64 tensor
    `[-1, n_features]`; `outputs`: `predict` and, for
    a classifier, `predict_proba` (one FP64 column per class, in `classes` order);
    `default_output`: what an infer request without `outputs` answers with.
    """
    return {"inputs": _inputs(model), "outputs": _outputs(model),
            "default_output": model.default_output, "classes": model.classes}
