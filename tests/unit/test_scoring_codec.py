"""MLflow's scoring protocol: the codec (`inferd.web.codecs.scoring`) builds the table
pandas would build from each format, and the routes answer in MLflow's shape.

What MLflow then does with the table (the model's signature) is the model's business and
is checked against a real `mlflow models serve` in
tests/integration/test_mlflow_oracle.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import pytest
from falcon import testing
from hypothesis import given, settings

from inferd import __version__
from inferd.common.errors import BadRequestError, UnsupportedMediaTypeError
from inferd.common.settings import Settings
from inferd.model.inputs import Columns
from inferd.reloading.reload import open_reloader
from inferd.web.codecs import scoring
from tests.support import app_client

MAX_ROWS = 8
N = ["a", "b"]


def decoded(body: dict[str, Any] | bytes,
            mime: str = scoring.JSON) -> tuple[tuple[str, ...], list[list[Any]], int]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    columns = scoring.decode(raw, mime, MAX_ROWS)
    assert isinstance(columns, Columns)
    return columns.names, [list(v) for v in columns.values], columns.n_rows


# (request body, (names, columns, rows)): the frame pandas builds from it in MLflow.
VALID: list[tuple[dict[str, Any], tuple[tuple[str, ...], list[list[Any]], int]]] = [
    ({"dataframe_split": {"columns": N, "data": [[1, "x"], [2.5, None]]}},
     (("a", "b"), [[1, 2.5], ["x", None]], 2)),
    ({"dataframe_split": {"columns": N, "data": [[1, 2], [3]]}},  # pandas pads
     (("a", "b"), [[1, 3], [2, None]], 2)),
    ({"dataframe_split": {"data": [[1, 2]]}}, (("0", "1"), [[1], [2]], 1)),
    ({"dataframe_split": {"columns": N, "data": [[1, 2]], "index": [7]}},
     (("a", "b"), [[1], [2]], 1)),
    ({"dataframe_split": {"columns": N, "data": [{"b": 1, "c": 2}]}},
     (("a", "b"), [[None], [1]], 1)),
    ({"dataframe_split": {"columns": [1, None], "data": [[1, 2]]}},
     (("1", "null"), [[1], [2]], 1)),
    ({"dataframe_records": [{"a": 1}, {"b": 2, "a": 3}]},
     (("a", "b"), [[1, 3], [None, 2]], 2)),
    ({"dataframe_records": [[1, 2], [3, 4]]}, (("0", "1"), [[1, 3], [2, 4]], 2)),
    ({"dataframe_records": [{}]}, ((), [], 1)),
    ({"instances": [{"a": 1, "b": 2}, {"b": 4, "a": 3}]},
     (("a", "b"), [[1, 3], [2, 4]], 2)),
    ({"instances": [[1, 2], [3, 4]]}, (("0", "1"), [[1, 3], [2, 4]], 2)),
    ({"instances": [1, 2, 3]}, (("0",), [[1, 2, 3]], 3)),
    ({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, (("a", "b"), [[1, 2], ["x", "y"]], 2)),
    ({"inputs": {"a": [1, 2], "b": 5}}, (("a", "b"), [[1, 2], [5, 5]], 2)),
    ({"inputs": {"a": 1, "b": "x"}}, (("a", "b"), [[1], ["x"]], 1)),
    ({"inputs": [{"a": 1}, {"b": 2}]}, (("a", "b"), [[1, None], [None, 2]], 2)),
    ({"inputs": [[1, 2]], "params": {"anything": 1}, "other": 0},
     (("0", "1"), [[1], [2]], 1)),
]


@pytest.mark.parametrize(("body", "expected"), VALID, ids=[json.dumps(v[0]) for v in VALID])
def test_each_format_decodes_to_the_frame_mlflow_builds(
        body: dict[str, Any], expected: tuple[tuple[str, ...], list[list[Any]], int]) -> None:
    assert decoded(body) == expected


@pytest.mark.parametrize(("body", "by_position"), [
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}', True),
    (b'{"dataframe_records": [{"a": 1}]}', True),
    (b'{"inputs": [[1]]}', True),
    (b'{"instances": [[1]]}', True),
    (b'{"inputs": {"a": [1]}}', False),
    (b'{"inputs": [{"a": 1}]}', False),
    (b'{"instances": [{"a": 1}]}', False),
    (b'{"instances": {"a": [1]}}', False),
])
def test_only_tables_and_rows_may_be_read_by_position(body: bytes, by_position: bool) -> None:
    assert scoring.decode(body, scoring.JSON, MAX_ROWS).by_position is by_position
    assert scoring.decode(b"a\n1\n", scoring.CSV, MAX_ROWS).by_position is False


def test_a_tensor_signature_refuses_named_tensors_as_mlflow_does() -> None:
    from inferd.model.enforce import InputRules

    rules = InputRules(
        signature={"kind": "tensor", "inputs": [{"name": None, "dtype": "float64",
                                                 "shape": [-1, 2]}], "outputs": None},
        input_kind="matrix", n_features=2, feature_names=None, accepts_nan=False)
    table = scoring.decode(b'{"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2]]}}',
                           scoring.JSON, MAX_ROWS)
    assert rules.matrix(table).tolist() == [[1.0, 2.0]]  # by position, as MLflow
    named = scoring.decode(b'{"inputs": {"b": [1], "a": [2]}}', scoring.JSON, MAX_ROWS)
    with pytest.raises(BadRequestError, match="unnamed tensor"):
        rules.matrix(named)


def test_json_that_only_python_reads_is_read_as_mlflow_reads_it() -> None:
    names, columns, rows = decoded(b'{"inputs": [[NaN, Infinity, 100000000000000000000000]]}')
    assert rows == 1 and columns[2] == [10**23] and columns[1] == [float("inf")]
    assert columns[0][0] != columns[0][0]  # NaN


# (body, a substring of the message): each is a 400, as in `mlflow models serve`.
INVALID: list[tuple[bytes, str]] = [
    (b"", "not valid JSON"),
    (b"{bad", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "received a JSON array"),
    (b"{}", "exactly one of the input fields"),
    (b'{"dataframe_split": {"data": [[1]]}, "instances": [[1]]}', "exactly one"),
    (b'{"dataframe_split": [[1, 2]]}', "must be an object"),
    (b'{"dataframe_split": {"columns": ["a"]}}', "must have a 'data' field"),
    (b'{"dataframe_split": {"data": [[1]], "foo": 1}}', "must have a 'data' field"),
    (b'{"dataframe_split": {"data": "x"}}', "must be an array of rows"),
    (b'{"dataframe_split": {"columns": "a", "data": [[1]]}}', "'columns' must be an array"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}', "names 2 columns"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [1, 2]}}', "names 2 columns"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}', "['a'] twice"),
    (b'{"dataframe_split": {"columns": [["a"]], "data": [[1]]}}', "array of names"),
    (b'{"dataframe_split": {"data": [[1]], "index": [1, 2]}}', "'index'"),
    (b'{"dataframe_split": {"data": [[1], 2]}}', "mixes rows"),
    (b'{"dataframe_split": {"columns": ["a"], "data": []}}', "no rows"),
    (b'{"dataframe_records": {"a": 1}}', "array of records"),
    (b'{"dataframe_records": [{"a": 1}, 2]}', "mixes records"),
    (b'{"dataframe_records": []}', "no rows"),
    (b'{"instances": [{"a": 1, "b": 2}, {"a": 3}]}', "same fields"),
    (b'{"instances": [{"a": 1}, [1]]}', "mixes records"),
    (b'{"instances": [[1, 2], [3]]}', "different lengths"),
    (b'{"instances": []}', "no rows"),
    (b'{"inputs": 5}', "got a JSON number"),
    (b'{"inputs": {"a": [1, 2], "b": [1]}}', "different lengths"),
    (b'{"inputs": [[1]' + b", [1]" * MAX_ROWS + b"]}", "INFERD_MAX_ROWS"),
]


@pytest.mark.parametrize(("body", "message"), INVALID, ids=[b.decode(errors="replace")[:60]
                                                            for b, _ in INVALID])
def test_malformed_json_says_what_was_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        scoring.decode(body, scoring.JSON, MAX_ROWS)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400


def test_any_json_scalar_names_a_column() -> None:
    body = b'{"dataframe_split": {"columns": [1e400, 100000000000000000000000, true], ' \
           b'"data": [[1, 2, 3]]}}'
    assert decoded(body)[0] == ("Infinity", "100000000000000000000000", "true")


def test_deeply_nested_json_is_a_bad_request() -> None:
    # orjson refuses the depth, then Python's json module runs out of recursion.
    with pytest.raises(BadRequestError):
        scoring.decode(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                       scoring.JSON, MAX_ROWS)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, database=None)
@given(key=st.sampled_from([*scoring.FORMATS, "other"]), value=JSON_VALUES,
       split=st.fixed_dictionaries({}, optional={"columns": JSON_VALUES, "data": JSON_VALUES,
                                                 "index": JSON_VALUES}))
def test_any_json_gives_a_table_or_a_bad_request(key: str, value: Any,
                                                 split: dict[str, Any]) -> None:
    body = {key: split if key == "dataframe_split" and value is None else value}
    try:
        table = scoring.decode(json.dumps(body).encode(), scoring.JSON, MAX_ROWS)
    except BadRequestError:
        return
    assert 0 < table.n_rows <= MAX_ROWS
    assert len(table.names) == len(table.values) == len(set(table.names))
    assert all(len(column) == table.n_rows for column in table.values)


@settings(max_examples=200, deadline=None, database=None)
@given(text=st.text(max_size=60))
def test_any_csv_gives_a_table_or_a_bad_request(text: str) -> None:
    try:
        table = scoring.decode(text.encode(), scoring.CSV, MAX_ROWS)
    except BadRequestError:
        return
    assert 0 < table.n_rows <= MAX_ROWS
    assert len(table.names) == len(table.values) == len(set(table.names))
    assert all(len(column) == table.n_rows for column in table.values)


# -- CSV ---------------------------------------------------------------------------------


def test_csv_is_read_as_pandas_reads_it() -> None:
    body = b",a,a,\r\n0,1,2\n\n1,NA,,x\n2\n"
    assert decoded(body, scoring.CSV) == (
        ("Unnamed: 0", "a", "a.1", "Unnamed: 3"),
        [["0", "1", "2"], ["1", None, None], ["2", None, None], [None, "x", None]], 3)


def test_csv_keeps_quoted_fields_and_strings() -> None:
    body = b'color,size\n"red, dark",0.5\nblue,"1e3"\n'
    assert decoded(body, scoring.CSV) == (("color", "size"),
                                           [["red, dark", "blue"], ["0.5", "1e3"]], 2)


def test_csv_fields_may_be_as_large_as_the_body() -> None:
    big = "x" * 300_000  # beyond the csv module's default field limit
    assert decoded(f"a\n{big}\n".encode(), scoring.CSV) == (("a",), [[big]], 1)


@pytest.mark.parametrize(("body", "message"), [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"a,b\n", "no rows"),
    (b"a,b\n1,2,3\n", "line 2 has more fields"),
    (b"a,b\n\xff,1\n", "not UTF-8"),
])
def test_malformed_csv_says_what_was_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        scoring.decode(body, scoring.CSV, MAX_ROWS)


# -- content types -------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "mime"), [
    ("application/json", scoring.JSON),
    ("application/json; charset=UTF-8", scoring.JSON),
    ("text/csv", scoring.CSV),
    ("text/csv ; charset=utf-8", scoring.CSV),
])
def test_media_types_mlflow_reads(header: str, mime: str) -> None:
    assert scoring.media_type(header) == mime


@pytest.mark.parametrize(("header", "message"), [
    (None, "no Content-Type"),
    ("", "no Content-Type"),
    ("text/plain", "only supports the content types"),
    ("application/vnd.apache.parquet", "only supports the content types"),
    ("application/json; charset=latin-1", "only supports UTF-8"),
    ("application/json; foo=bar", "parameters: foo"),
])
def test_other_media_types_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match=message):
        scoring.media_type(header)


def test_encode_is_mlflow_s_answer() -> None:
    import numpy as np

    assert json.loads(scoring.encode([0, np.int64(2), [0.25, 0.75]])) == {
        "predictions": [0, 2, [0.25, 0.75]]}


# -- through the HTTP app ------------------------------------------------------------------


@pytest.fixture
def client(make_client: Callable[..., testing.TestClient]) -> testing.TestClient:
    return make_client(max_rows=MAX_ROWS)


def mlflow_error(resp: testing.Result, status: int, code: str = "BAD_REQUEST") -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    assert set(resp.json) == {"error_code", "message"}
    assert resp.json["error_code"] == code
    message: str = resp.json["message"]
    return message


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; foo=1"])
def test_another_content_type_answers_415_in_mlflow_s_shape(
        client: testing.TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.simulate_post("/invocations", body=b'{"inputs": [[1, 2, 3, 4]]}',
                                headers=headers)
    mlflow_error(resp, 415)


def test_malformed_body_answers_400_in_mlflow_s_shape(client: testing.TestClient) -> None:
    resp = client.simulate_post("/invocations", body=b"{bad",
                                headers={"Content-Type": "application/json"})
    assert "not valid JSON" in mlflow_error(resp, 400)


def test_body_over_the_limit_answers_413(make_client: Callable[..., testing.TestClient]) -> None:
    client = make_client(max_rows=MAX_ROWS, max_body_bytes=64)
    resp = client.simulate_post("/invocations", body=b'{"inputs": [' + b"[1, 2]," * 20 + b"]}",
                                headers={"Content-Type": "application/json"})
    assert "INFERD_MAX_BODY_BYTES" in mlflow_error(resp, 413)


def test_another_method_answers_405_in_mlflow_s_shape(client: testing.TestClient) -> None:
    mlflow_error(client.simulate_get("/invocations"), 405)


def test_ping_and_version(client: testing.TestClient) -> None:
    ping = client.simulate_get("/ping")
    assert (ping.status_code, ping.text) == (200, "\n")
    version = client.simulate_get("/version")
    assert (version.status_code, version.text) == (200, __version__)
    assert version.headers["Content-Type"].startswith("text/plain")


def test_without_a_model_ping_and_invocations_answer_503(settings: Settings) -> None:
    client = app_client(settings, runner=open_reloader(settings))
    mlflow_error(client.simulate_get("/ping"), 503, "TEMPORARILY_UNAVAILABLE")
    resp = client.simulate_post("/invocations", json={"inputs": [[1, 2, 3, 4]]})
    assert "no model is published yet" in mlflow_error(resp, 503, "TEMPORARILY_UNAVAILABLE")
    # A malformed body is still the client's error.
    mlflow_error(client.simulate_post("/invocations", json={"inputs": 5}), 400)


def test_inferd_s_own_routes_keep_their_error_shape(client: testing.TestClient) -> None:
    resp = client.simulate_post("/predict/", body=b"{bad")
    assert resp.status_code == 400 and list(resp.json) == ["detail"]
