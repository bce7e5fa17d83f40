"""Requests checked against a model's signature (`inferd.model.enforce`,
`inferd.model.frame`), with MLflow's own scoring-server parsing as the oracle for
every column type rule: what MLflow accepts is accepted with the same value, what it
refuses is a BadRequestError naming the column."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pytest

from inferd.common.errors import BadRequestError
from inferd.model.enforce import InputRules, typed_column
from inferd.model.inputs import Columns
from inferd.model.loaded import model_input

VALUES: list[Any] = [1, -1, 1.5, 2.0, -2.7, True, False, "1.5", "3", " 4 ", "abc", "", None,
                     2 ** 40, 2 ** 62, 1e300, "nan", "inf", "true", [1], {"a": 1}]
TYPES = ["double", "float", "long", "integer", "boolean"]


def mlflow_cast(column_type: str, values: list[Any]) -> np.ndarray | None:
    """What `mlflow models serve` hands the model for a dataframe_split body with one
    column `x` of `column_type`, or None where it answers 400."""
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types.schema import ColSpec, Schema

    schema = Schema([ColSpec(column_type, "x")])
    body = {"dataframe_split": {"columns": ["x"], "data": [[v] for v in values]}}
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(_enforce_schema(infer_and_parse_data(body, schema), schema)["x"])
    except Exception:
        return None
    finally:
        logging.disable(logging.NOTSET)


def out_of_range(column_type: str, value: Any) -> bool:
    """Where pandas wraps an integer silently and inferd refuses it (on purpose)."""
    limit = {"long": 2 ** 63, "integer": 2 ** 31}.get(column_type)
    return limit is not None and isinstance(value, int | float) and not (
        -limit <= math.trunc(value) < limit)


@pytest.mark.parametrize("column_type", TYPES)
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_column_value_is_cast_as_mlflow_casts_it(column_type: str, value: Any) -> None:
    expected = mlflow_cast(column_type, [value])
    if expected is None or out_of_range(column_type, value):
        with pytest.raises(BadRequestError, match=f"column 'x' is of type {column_type}"):
            typed_column("x", [value], column_type)
        return
    got = typed_column("x", [value], column_type)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("column_type", ["double", "long"])
def test_a_column_of_several_values_is_cast_together(column_type: str) -> None:
    values = [1, 2.5, "3", True]
    got = typed_column("x", values, column_type)
    expected = mlflow_cast(column_type, values)
    assert expected is not None
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(BadRequestError, match="row 2 is 'z'"):
        typed_column("x", [1, 2, "z"], column_type)


SIGNATURE = {"kind": "columns", "outputs": None, "inputs": [
    {"name": "a", "type": "double", "required": True},
    {"name": "b", "type": "long", "required": True},
    {"name": "c", "type": "float", "required": False}]}


def rules(signature: dict[str, Any] | None = SIGNATURE, kind: str = "matrix",
          accepts_nan: bool = False, feature_names: list[str] | None = None,
          n_features: int | None = 3) -> InputRules:
    return InputRules(signature, kind, n_features, feature_names, accepts_nan)


def test_columns_in_any_order_land_in_signature_order_and_extras_are_ignored() -> None:
    request = Columns(("c", "extra", "b", "a"), ([0.5], ["ignored"], [2], [1.25]), 1)
    np.testing.assert_array_equal(rules().matrix(request), [[1.25, 2.0, 0.5]])


def test_a_missing_required_column_is_named() -> None:
    with pytest.raises(BadRequestError, match="missing required column 'b'"):
        rules().matrix(Columns(("a", "c"), ([1.0], [1.0]), 1))
    with pytest.raises(BadRequestError, match="missing required columns 'a', 'b'"):
        rules().matrix(Columns(("c",), ([1.0],), 1))


def test_a_missing_optional_column_is_a_missing_value() -> None:
    request = Columns(("a", "b"), ([1.0], [2]), 1)
    assert np.isnan(rules(accepts_nan=True).matrix(request)[0, 2])
    with pytest.raises(BadRequestError, match="column 'c' row 0 is missing"):
        rules().matrix(request)


def test_null_in_a_double_column_is_nan_and_refused_where_the_model_refuses_nan() -> None:
    request = Columns(("a", "b", "c"), ([1.0, None], [1, 2], [1.0, 1.0]), 2)
    with pytest.raises(BadRequestError, match="column 'a' row 1 is missing"):
        rules().matrix(request)
    assert np.isnan(rules(accepts_nan=True).matrix(request)[1, 0])
    with pytest.raises(BadRequestError, match="column 'a' row 0 is infinite"):
        rules(accepts_nan=True).matrix(Columns(("a", "b"), (["inf"], [1]), 1))


def test_a_float_matrix_is_taken_by_position_when_its_width_fits() -> None:
    rows = np.array([[1.0, 2.0, 3.0]])
    assert rules().matrix(rows) is rows
    with pytest.raises(BadRequestError, match="each row must have 3 features, got 2"):
        rules().matrix(np.ones((1, 2)))


def test_a_float_matrix_is_checked_finite_value_by_value() -> None:
    """Finite values whose sum overflows are taken; one infinite or NaN value anywhere
    is refused, naming its place."""
    huge = np.array([[1e308, 1e308, -1e308], [1e308, 1e308, 1.0]])
    assert rules().matrix(huge) is huge
    for bad, what in ((np.inf, "infinite"), (-np.inf, "infinite"), (np.nan, "missing")):
        rows = huge.copy()
        rows[1, 2] = bad
        with pytest.raises(BadRequestError, match=f"feature 2 row 1 is {what}"):
            rules().matrix(rows)
    rows = huge.copy()
    rows[0, 1] = np.nan
    assert rules(accepts_nan=True).matrix(rows) is rows
    many = np.tile(huge, (100, 1))  # past the small arrays Python sums
    assert rules().matrix(many) is many
    many[150, 0] = -np.inf
    with pytest.raises(BadRequestError, match="feature 0 row 150 is infinite"):
        rules().matrix(many)


def test_without_a_signature_fitted_names_are_matched_by_name() -> None:
    named = rules(signature=None, feature_names=["x", "y"], n_features=2)
    np.testing.assert_array_equal(named.matrix(Columns(("y", "x"), ([2], [1]), 1)), [[1, 2]])
    with pytest.raises(BadRequestError, match="missing required column 'y'"):
        named.matrix(Columns(("x", "z"), ([1], [2]), 1))
    unnamed = rules(signature=None, n_features=2)
    np.testing.assert_array_equal(unnamed.matrix(Columns(("q", "p"), ([1], [2]), 1)), [[1, 2]])
    with pytest.raises(BadRequestError, match="must have 2 features, got 3 columns"):
        unnamed.matrix(Columns(("q", "p", "r"), ([1], [2], [3]), 1))


def test_a_tensor_signature_takes_columns_by_position_in_its_dtype() -> None:
    tensor = {"kind": "tensor", "outputs": None,
              "inputs": [{"name": None, "dtype": "int64", "shape": [-1, 2]}]}
    got = rules(tensor, n_features=2).matrix(Columns(("p", "q"), ([1.7], ["2"]), 1))
    np.testing.assert_array_equal(got, [[1.0, 2.0]])  # int64: 1.7 truncated, as MLflow
    with pytest.raises(BadRequestError, match="must have 2 features, got 1 columns"):
        rules(tensor, n_features=2).matrix(Columns(("p",), ([1],), 1))


def test_a_frame_gets_typed_columns_in_signature_order() -> None:
    signature = {"kind": "columns", "outputs": None, "inputs": [
        {"name": "colour", "type": "string", "required": True},
        {"name": "size", "type": "double", "required": True},
        {"name": "count", "type": "long", "required": True},
        {"name": "blob", "type": "binary", "required": False},
        {"name": "when", "type": "datetime", "required": False}]}
    frame_rules = rules(signature, kind="frame", n_features=None)
    request = Columns(("when", "count", "size", "colour", "blob"),
                      (["2024-01-02"], ["3"], [1], ["red"], ["aGk=\n"]), 1)
    frame = model_input(frame_rules, request)
    assert list(frame.columns) == ["colour", "size", "count", "blob", "when"]
    assert [str(t) for t in frame.dtypes] == ["str", "float64", "int64", "object",
                                              "datetime64[ns]"]
    assert frame.iloc[0].tolist()[:4] == ["red", 1.0, 3, b"hi"]
    without_optional = model_input(frame_rules, Columns(("colour", "size", "count"),
                                                        (["red"], [1], [3]), 1))
    assert list(without_optional.columns) == ["colour", "size", "count"]
    with pytest.raises(BadRequestError, match="column 'blob' is of type binary"):
        model_input(frame_rules, Columns(("colour", "size", "count", "blob"),
                                         (["red"], [1], [3], [5]), 1))
    with pytest.raises(BadRequestError, match="column 'when' is of type datetime"):
        model_input(frame_rules, Columns(("colour", "size", "count", "when"),
                                         (["red"], [1], [3], ["not a date"]), 1))


def test_a_frame_model_without_signature_takes_its_fitted_columns_as_sent() -> None:
    fitted = rules(signature=None, kind="frame", feature_names=["colour", "size"],
                   n_features=2)
    frame = model_input(fitted, Columns(("size", "colour", "x"), ([1], ["red"], [0]), 1))
    assert list(frame.columns) == ["colour", "size"]
    assert frame.iloc[0].tolist() == ["red", 1]
    as_sent = model_input(rules(signature=None, kind="frame", n_features=None),
                          Columns(("b", "a"), ([1], ["x"]), 1))
    assert list(as_sent.columns) == ["b", "a"]


def test_a_float_matrix_for_a_frame_model_takes_the_signature_names_by_position() -> None:
    frame_rules = rules(kind="frame")
    frame = model_input(frame_rules, np.array([[1.5, 2.0, 3.0]]))
    assert list(frame.columns) == ["a", "b", "c"]
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "float32"]
    with pytest.raises(BadRequestError, match=r"each row must have 3 features \(a, b, c\), got 2"):
        model_input(frame_rules, np.ones((1, 2)))
