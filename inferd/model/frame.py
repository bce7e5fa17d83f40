"""A request's inputs as the pandas DataFrame a "frame" model needs (one whose
signature has string, binary or datetime columns, or that selects columns by name),
with MLflow's casts (`inferd.model.enforce`).

Imported lazily by `inferd.model.loaded.model_input`, so pandas is loaded only in a worker whose
slot holds such a model; a worker serving a numeric model never imports it here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import pandas as pd

from inferd.common.errors import BadRequestError
from inferd.model.enforce import InputRules, select_columns, typed_column
from inferd.model.inputs import Columns, ModelInput
from inferd.model.signature import NUMERIC_TYPES


def to_frame(inputs: ModelInput, rules: InputRules) -> pd.DataFrame:
    specs = rules.named_columns
    if isinstance(inputs, np.ndarray):
        inputs = _positional_columns(inputs, rules, specs)
    if specs is None:
        # No names to match: the columns as sent, types as pandas infers them (what
        # MLflow hands a model without a signature).
        return pd.DataFrame(dict(zip(inputs.names, inputs.values, strict=True)))
    chosen = select_columns(inputs, specs)
    if rules.signature is None:
        # Fitted on named columns, no signature: in the fitted order, types as inferred.
        return pd.DataFrame({spec["name"]: values for spec, values in
                             zip(specs, chosen, strict=True)})
    data = {spec["name"]: _column(spec["name"], values, spec["type"])
            for spec, values in zip(specs, chosen, strict=True) if values is not None}
    return pd.DataFrame(data)


def _positional_columns(rows: np.ndarray, rules: InputRules,
                        specs: list[dict[str, Any]] | None) -> Columns:
    """A float matrix against named columns: by position, when the width agrees."""
    names = [spec["name"] for spec in specs] if specs is not None else [
        str(i) for i in range(rows.shape[1])]
    if len(names) != rows.shape[1]:
        raise BadRequestError(f"each row must have {len(names)} features ({', '.join(names)}), "
                              f"got {rows.shape[1]}")
    return Columns(tuple(names), tuple(rows.T), rows.shape[0])


def _column(name: str, values: Any, column_type: str) -> Any:
    if column_type in NUMERIC_TYPES:
        return typed_column(name, values, column_type)
    values = list(values)
    if column_type == "binary":
        return [_base64(name, row, v) for row, v in enumerate(values)]
    if column_type == "datetime":
        try:
            return pd.to_datetime(pd.Series(values)).dt.as_unit("ns")
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"column {name!r} is of type datetime: {exc}") from None
    series = pd.Series(values)
    # MLflow keeps a string column as pandas infers it (its string dtype when every
    # value is a string), else as Python objects.
    return series if isinstance(series.dtype, pd.StringDtype) else series.astype(object)


def _base64(name: str, row: int, value: Any) -> bytes:
    try:
        return base64.decodebytes(bytes(value, "utf8"))
    except (TypeError, binascii.Error):
        raise BadRequestError(f"column {name!r} is of type binary: row {row} is not "
                              "base64-encoded text") from None
