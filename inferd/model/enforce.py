"""A request's inputs checked against the model's signature, as MLflow's scoring server
does, and turned into what the model takes: a float64 matrix (numpy only, here) or a
DataFrame (`inferd.model.frame`, pandas, imported only in a worker whose model needs
one, by `inferd.model.loaded.model_input`).

Called once a request by `LoadedModel.predict`, in a gunicorn worker thread. The rules,
from `mlflow models serve` (`mlflow/utils/proto_json_utils.py`
`cast_df_types_according_to_schema`, then `mlflow/models/utils.py` `_enforce_schema`):

- named columns match the signature by name, in any order; a missing required column
  is refused naming it; extra columns are ignored (MLflow logs a warning and drops them);
- a value is cast to its column's type as pandas' `astype` would: numbers, booleans and
  numeric strings into double / float; integers, booleans, integral strings and floats
  (truncated) into long / integer; anything into boolean (its truth value); null is NaN
  in a double or float column and refused in an integer one. A value MLflow could not
  cast (a non-numeric string in a number column, an array, an object) is refused
  naming the column. Where pandas would wrap an integer silently (1e300 into a long),
  inferd refuses it instead;
- without a signature, a model fitted on named columns (`feature_names_in_`) takes
  them by name as doubles; otherwise columns are taken in the order sent;
- a float matrix (positional features) is taken as it is when its width fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from inferd.common.errors import BadRequestError
from inferd.model.inputs import Columns, ModelInput
from inferd.model.signature import input_names

_NUMBERS = frozenset({int, float})
_INT_RANGES = {"long": (np.int64, 2.0 ** 63), "integer": (np.int32, 2.0 ** 31)}
# A tensor signature's dtype, as the column type whose cast rules apply to it.
_TENSOR_TYPES = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer",
                 "bool": "boolean"}


@dataclass(frozen=True)
class InputRules:
    """How one served model takes its inputs; built once when its slot is loaded."""

    signature: dict[str, Any] | None
    input_kind: str  # "matrix" or "frame"
    n_features: int | None
    feature_names: list[str] | None  # the estimator's feature_names_in_
    accepts_nan: bool

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], n_features: int | None) -> InputRules:
        return cls(signature=manifest.get("signature"),
                   input_kind=str(manifest.get("input_kind") or "matrix"),
                   n_features=n_features,
                   feature_names=manifest.get("feature_names"),
                   accepts_nan=bool(manifest.get("accepts_nan", False)))

    @cached_property
    def named_columns(self) -> list[dict[str, Any]] | None:
        """The column specs requests are matched against by name, if any."""
        if input_names(self.signature) is not None:
            return list(self.signature["inputs"]) if self.signature else None
        if self.signature is None and self.feature_names is not None:
            return [{"name": n, "type": "double", "required": True} for n in self.feature_names]
        return None

    @cached_property
    def _names_and_types(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        specs = self.named_columns
        if specs is None:
            return None
        return tuple(s["name"] for s in specs), tuple(s["type"] for s in specs)

    @cached_property
    def _all_doubles(self) -> bool:
        named = self._names_and_types
        return named is not None and set(named[1]) == {"double"}

    def matrix(self, inputs: ModelInput) -> np.ndarray:
        if isinstance(inputs, Columns):
            rows, names = self._columns_matrix(inputs)
        else:
            rows, names = inputs, None
            self._check_width(rows.shape[1])
        if not _sum_is_finite(rows):
            self._refuse_non_finite(rows, names)
        return rows

    def _check_width(self, width: int, what: str = "") -> None:
        if self.n_features is not None and width != self.n_features:
            raise BadRequestError(f"each row must have {self.n_features} features, got "
                                  f"{width}{what}")

    def _columns_matrix(self, inputs: Columns) -> tuple[np.ndarray, list[str]]:
        named = self._names_and_types
        if named is None:
            chosen, names, types = self._positional(inputs)
        else:
            names, types = list(named[0]), list(named[1])
            # PERF: columns sent in the signature's order are taken as they are.
            chosen = (list(inputs.values) if inputs.names == named[0]
                      else select_columns(inputs, self.named_columns or []))
        out = np.empty((inputs.n_rows, len(chosen)), dtype=np.float64)
        if self._all_doubles and _plain_table(chosen):
            out.T[...] = chosen  # PERF: the common case, one C-level conversion
            return out, names
        for j, (name, values, column_type) in enumerate(zip(names, chosen, types, strict=True)):
            if values is None:  # an optional column that was not sent
                out[:, j] = np.nan
            elif column_type == "double" and _plain_numbers(values):
                out[:, j] = values
            else:
                out[:, j] = typed_column(name, values, column_type)
        return out, names

    def _positional(self, inputs: Columns) -> tuple[list[Any], list[str], list[str]]:
        """Columns taken in the order sent: an unnamed column signature (MLflow takes
        the first n), a tensor signature, or no signature at all."""
        signature = self.signature
        names = list(inputs.names)
        if signature is not None and signature["kind"] == "columns":
            width = len(signature["inputs"])
            if len(names) < width:
                raise BadRequestError(f"the model signature has {width} unnamed inputs; "
                                      f"the request has {len(names)} columns")
            types = [spec["type"] for spec in signature["inputs"]]
            return list(inputs.values[:width]), names[:width], types
        column_type = "double"
        if signature is not None:
            if not inputs.by_position:
                raise BadRequestError(
                    "the model's signature is one unnamed tensor, which MLflow does not "
                    "fill from named inputs; send rows of values (e.g. dataframe_split, "
                    "or 'inputs' as an array of rows)")
            dtype = signature["inputs"][0]["dtype"]
            if dtype not in _TENSOR_TYPES:
                raise BadRequestError(f"the model takes a {dtype} tensor, which cannot be sent "
                                      "as columns")
            column_type = _TENSOR_TYPES[dtype]
        self._check_width(len(names), f" columns ({', '.join(names)})")
        return list(inputs.values), names, [column_type] * len(names)

    def _refuse_non_finite(self, rows: np.ndarray, names: list[str] | None) -> None:
        infinite = np.isinf(rows)
        bad = infinite if infinite.any() else np.isnan(rows)
        if (bad is not infinite and self.accepts_nan) or not bad.any():
            return  # NaN the model takes, or finite values whose sum overflowed
        row, column = (int(i) for i in np.argwhere(bad)[0])
        where = f"column {names[column]!r}" if names else f"feature {column}"
        if bad is infinite:
            raise BadRequestError(f"{where} row {row} is infinite; the model takes finite numbers")
        raise BadRequestError(f"{where} row {row} is missing (null or NaN), and this model "
                              "does not accept missing values")


# Up to this many values, Python sums them faster than numpy (whose reduction costs
# about a microsecond however few they are).
_SMALL = 256


def _sum_is_finite(rows: np.ndarray) -> bool:
    """Whether the values' sum is finite. PERF: it is not whenever a value is NaN or
    infinite, and it costs a third of isfinite().all() on a row; a sum of finite values
    that overflowed sends the caller to look value by value, finding nothing."""
    if rows.size <= _SMALL and rows.dtype.kind == "f":
        return math.isfinite(sum(rows.ravel().tolist()))
    return math.isfinite(np.add.reduce(rows, axis=None))


def select_columns(inputs: Columns, specs: list[dict[str, Any]]) -> list[Any]:
    """The values of each spec's column, in the specs' order (None for an optional
    column not sent); extra columns are dropped, as MLflow does."""
    index = {name: i for i, name in enumerate(inputs.names)}
    missing = [s["name"] for s in specs if s["name"] not in index and s.get("required", True)]
    if missing:
        raise BadRequestError(
            f"missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}; the model's signature has columns "
            f"{', '.join(repr(s['name']) for s in specs)}")
    return [inputs.values[index[s["name"]]] if s["name"] in index else None for s in specs]


def _plain_table(chosen: list[Any]) -> bool:
    """Whether every column is a list of plain JSON numbers (not a missing column)."""
    try:
        return set(map(type, chain.from_iterable(chosen))) <= _NUMBERS
    except TypeError:  # None: an optional column that was not sent
        return False


def _plain_numbers(values: Sequence[Any]) -> bool:
    if isinstance(values, np.ndarray):
        return values.dtype.kind in "fiu"
    return set(map(type, values)) <= _NUMBERS


def typed_column(name: str, values: Sequence[Any], column_type: str) -> np.ndarray:
    """`values` cast to the numpy type of MLflow's `column_type` (one of the numeric
    DataTypes), as MLflow's scoring server casts them; BadRequestError naming the
    column for a value it would refuse."""
    if column_type == "boolean":
        return _booleans(values)
    numbers = _as_floats(name, values, column_type)
    if column_type == "double":
        return numbers
    if column_type == "float":
        with np.errstate(over="ignore"):  # as pandas: too large for float32 is inf
            return numbers.astype(np.float32)
    dtype, limit = _INT_RANGES[column_type]
    finite = np.isfinite(numbers)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise BadRequestError(f"column {name!r} is of type {column_type}: row {row} is "
                              f"{'null' if np.isnan(numbers[row]) else 'infinite'}")
    whole = np.trunc(numbers)  # pandas' astype truncates 1.5 to 1
    outside = (whole < -limit) | (whole >= limit)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise BadRequestError(f"column {name!r} is of type {column_type}: row {row} "
                              f"({numbers[row]!r}) is out of its range")
    return whole.astype(dtype)


def _as_floats(name: str, values: Sequence[Any], column_type: str) -> np.ndarray:
    if _plain_numbers(values):
        return np.asarray(values, dtype=np.float64)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    parse = int if column_type in _INT_RANGES else float
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        try:
            out[row] = _float(value, parse)
        except (TypeError, ValueError, OverflowError):
            raise BadRequestError(
                f"column {name!r} is of type {column_type}: row {row} is "
                f"{_shown(value)}, which MLflow cannot convert to {column_type}") from None
    return out


def _float(value: Any, parse: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool | int | float | np.number):
        return float(value)
    if isinstance(value, str):
        return float(parse(value))  # "1.5" is a double; an integer column wants "3"
    raise TypeError(type(value).__name__)


def _booleans(values: Sequence[Any]) -> np.ndarray:
    # pandas' astype(bool) is each value's truth value: "false" is True, null False.
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(bool)
    return np.fromiter((bool(v) for v in values), dtype=bool, count=len(values))


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, list | dict) else (
        f"a JSON {'array' if isinstance(value, list) else 'object'}")
    return text[:40]
