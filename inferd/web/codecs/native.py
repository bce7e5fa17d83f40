"""Decode a /predict/ request body into rows, and encode the answer.

A body is `{"features": [[f, ...], ...]}`: a non-empty list of rows, each a
non-empty list of finite JSON numbers, all rows of one width, and optionally
`"output": "predict" | "predict_proba"` (absent: the model's default, its MLflow
`pyfunc_predict_fn`). Everything else is a BadRequestError whose message says what was
expected and what came. Probabilities are answered with the class of each column:
`{"predictions": [[p, ...], ...], "classes": [...], "model_version": "2"}`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import orjson

from inferd.common.errors import BadRequestError
from inferd.model.inputs import OUTPUTS

_EXPECTED = 'expected a JSON object like {"features": [[5.1, 3.5, 1.4, 0.2]]}'


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "value"


def decode(body: bytes | bytearray, max_rows: int) -> np.ndarray:
    """The rows of a /predict/ body."""
    return decode_request(body, max_rows)[0]


def json_object(body: bytes | bytearray | memoryview, expected: str) -> dict[str, Any]:
    """The JSON object a request body holds (shared by the protocols' codecs); a
    BadRequestError ending with `expected` otherwise."""
    if not body:
        raise BadRequestError(f"empty request body; {expected}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson is strict JSON: NaN, Infinity and 1e999 are rejected here too.
        raise BadRequestError(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequestError(f"got a JSON {json_type(doc)}; {expected}")
    return doc


def decode_request(body: bytes | bytearray,
                   max_rows: int) -> tuple[np.ndarray, str | None]:
    """The rows of a /predict/ body and the output it asks for (None: the default)."""
    doc = json_object(body, _EXPECTED)
    if "features" not in doc:
        raise BadRequestError(f"missing 'features'; {_EXPECTED}")
    return to_rows(doc["features"], max_rows), _output(doc.get("output"))


def _output(output: Any) -> str | None:
    if output is None or output in OUTPUTS:
        return output
    shown = orjson.dumps(output).decode()[:40] if isinstance(output, str) else (
        f"a JSON {json_type(output)}")
    raise BadRequestError(f"'output' is {shown}; expected one of {', '.join(OUTPUTS)}")


def to_rows(features: Any, max_rows: int) -> np.ndarray:
    if not isinstance(features, list) or not features:
        raise BadRequestError(f"'features' must be a non-empty list of rows; {_EXPECTED}")
    if len(features) > max_rows:
        raise BadRequestError(
            f"'features' has {len(features)} rows, more than the limit of {max_rows} "
            "(INFERD_MAX_ROWS); split the request"
        )
    # PERF: the common, well-formed case in C-level iterators; the loop below only runs
    # to find the row an error message should name.
    if set(map(type, features)) != {list} or len(set(map(len, features))) != 1 or (
            not features[0]):
        _check_row_shapes(features)
    try:
        rows = np.array(features, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequestError(_first_non_number(features)) from None
    if rows.ndim != 2:
        raise BadRequestError("'features' must be a list of rows of plain numbers")
    if _has_non_numbers(features):
        raise BadRequestError(_first_non_number(features))
    # PERF: no np.isfinite pass: orjson refuses NaN, Infinity and numbers beyond a
    # double's range (1e999), and gives the integers it accepts within 64 bits, so every
    # int or float here converts to a finite float64 (tests/unit/test_payload.py checks
    # both).
    return rows


_NUMBER_TYPES = frozenset({int, float})


def _check_row_shapes(features: list[Any]) -> None:
    width = None
    for i, row in enumerate(features):
        if not isinstance(row, list):
            raise BadRequestError(
                f"row {i} is a JSON {json_type(row)}, expected an array of numbers; "
                "'features' must be two-dimensional"
            )
        if width is None:
            width = len(row)
        if len(row) != width or not row:
            raise BadRequestError(
                f"row {i} has {len(row)} values, expected {width or 'at least 1'}; "
                "all rows must have the same number of features"
            )


def _has_non_numbers(features: list[list[Any]]) -> bool:
    # np.array(dtype=float) quietly accepts "1.5" and True; a client that sends
    # those has a bug we should report rather than guess around.
    # PERF: the set of value types, built by C-level iterators, is 5-10x faster than a
    # generator testing each value (it was most of decoding a 100-row body).
    return not set(map(type, chain.from_iterable(features))) <= _NUMBER_TYPES


def _first_non_number(features: list[list[Any]]) -> str:
    for i, row in enumerate(features):
        for j, value in enumerate(row):
            if type(value) not in (int, float):
                try:
                    shown = orjson.dumps(value).decode()[:40]
                except orjson.JSONEncodeError:  # nested deeper than orjson will write
                    shown = f"a deeply nested JSON {json_type(value)}"
                return f"features[{i}][{j}] is {shown}, expected a number"
    return "features must be numbers"


def encode(predictions: list[Any], version: str, classes: list[Any] | None = None) -> bytes:
    """The answer; `classes` (probabilities only) names each probability column."""
    answer: dict[str, Any] = {"predictions": predictions, "model_version": version}
    if classes is not None:
        answer = {"predictions": predictions, "classes": classes, "model_version": version}
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
