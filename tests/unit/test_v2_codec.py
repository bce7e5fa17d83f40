"""The Open Inference Protocol codec: v2 infer requests in (JSON and the binary tensor
data extension), what the model is handed, and answers out. The bytes of the binary
extension are built by `tritonclient` itself, the client most v2 users run."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.http._utils import _get_inference_request

from inferd.common.errors import BadRequestError
from inferd.model.inputs import Columns
from inferd.web.codecs import v2, v2_binary

MAX_ROWS = 8
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def json_request(data: Any, shape: list[int], datatype: str = "FP64", name: str = "input-0",
                 **extra: Any) -> bytes:
    return orjson.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                     "data": data}], **extra})


def triton_request(array: np.ndarray, datatype: str, binary: bool = True,
                   outputs: list[Any] | None = None) -> tuple[bytes, str | None]:
    """The body and Inference-Header-Content-Length that tritonclient sends."""
    tensor = triton.InferInput("input-0", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    body, header_length = _get_inference_request(
        inputs=[tensor], request_id="", outputs=outputs, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None,
        custom_parameters=None)
    return body, None if header_length is None else str(header_length)


def decode(body: bytes, header_length: str | None = None) -> v2.InferRequest:
    return v2.decode(body, header_length, MAX_ROWS)


# -- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[v for row in ROWS for v in row], ROWS])
def test_flat_and_nested_data_decode_to_the_same_matrix(data: list[Any]) -> None:
    request = decode(json_request(data, [2, 4]))
    rows = v2.model_input(request, frozenset())
    assert isinstance(rows, np.ndarray) and rows.dtype == np.float64
    assert rows.tolist() == ROWS


@pytest.mark.parametrize("datatype, data, expected", [
    ("FP32", [0.5, 1.5], [[0.5, 1.5]]),
    ("INT32", [1, -2], [[1.0, -2.0]]),
    ("INT64", [2**40, 3], [[float(2**40), 3.0]]),
    ("BOOL", [True, False], [[1.0, 0.0]]),
    ("UINT8", [255, 0], [[255.0, 0.0]]),
])
def test_numeric_datatypes_become_float_rows(datatype: str, data: list[Any],
                                             expected: list[list[float]]) -> None:
    rows = v2.model_input(decode(json_request(data, [1, 2], datatype)), frozenset())
    assert isinstance(rows, np.ndarray) and rows.tolist() == expected


@pytest.mark.parametrize("body, header, message", [
    (b"", None, "empty request body"),
    (b"{", None, "malformed JSON"),
    (b"[]", None, "got a JSON array"),
    (b'{"inputs": []}', None, "'inputs' must be a non-empty list"),
    (b'{"inputs": [1]}', None, "inputs[0] is a JSON number"),
    (b'{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}', None, "needs a 'name'"),
    (json_request([1.0] * 4, [1, 4], "FP8"), None, "unknown datatype 'FP8'"),
    (json_request([1.0] * 4, [1, 4], 7), None, "unknown datatype 'number'"),
    (json_request([1.0] * 3, [1, 4]), None, "its shape holds 4 elements, but 'data' has 3"),
    (json_request([1.0] * 4, [1, -4]), None, "non-negative integers"),
    (json_request([1.0] * 4, [1.5, 4]), None, "non-negative integers"),
    (json_request([], [0, 4]), None, "has no rows"),
    (json_request([1.0] * 36, [9, 4]), None, "more than the limit of 8 (INFERD_MAX_ROWS)"),
    (json_request(["1.5", 1, 1, 1], [1, 4]), None, "FP64 elements must be numbers"),
    (json_request([True, 1, 1, 1], [1, 4]), None, "FP64 elements must be numbers"),
    (json_request([1.5, 1, 1, 1], [1, 4], "INT64"), None, "INT64 elements must be integers"),
    (json_request([1, 0], [1, 2], "BOOL"), None, "BOOL elements must be true or false"),
    (json_request([2**40, 1], [1, 2], "INT32"), None, "out of the range of INT32"),
    (json_request([[1.0, 2.0], 3.0, 4.0], [1, 4]), None, "mixes lists and elements"),
    (json_request({"a": 1}, [1, 1]), None, "'data' must be a list"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]}', None,
     "neither 'data' nor a binary_data_size"),
    (json_request([1.0], [1, 1], outputs=[{"name": "decision_function"}]), None,
     "unknown output 'decision_function'"),
    (json_request([1.0], [1, 1], outputs=[{"name": "predict"}, {"name": "predict"}]), None,
     "requested twice"),
    (json_request([1.0], [1, 1], outputs=[{"name": "predict",
                                           "parameters": {"classification": 2}}]), None,
     "classification extension is not supported"),
    (json_request([1.0], [1, 1], parameters={"binary_data_output": "yes"}), None,
     "must be true or false"),
    (json_request([1.0], [1, 1], id=5), None, "'id' is a JSON number"),
    (orjson.dumps({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}] * 2}),
     None, "two inputs have the same name"),
])
def test_bad_requests_say_what_was_wrong(body: bytes, header: str | None,
                                         message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        decode(body, header)
    assert message in str(caught.value)


# -- the binary tensor data extension -------------------------------------------------------


@pytest.mark.parametrize("dtype, datatype", [
    (np.float32, "FP32"), (np.float64, "FP64"), (np.int32, "INT32"), (np.int64, "INT64"),
    (np.bool_, "BOOL"), (np.float16, "FP16"), (np.uint16, "UINT16"),
])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_requests_decode_to_the_tensor_sent(dtype: Any, datatype: str,
                                                         binary: bool) -> None:
    array = (np.arange(12).reshape(3, 4) % 2 if dtype is np.bool_
             else np.arange(12).reshape(3, 4) * 1.5).astype(dtype)
    request = decode(*triton_request(array, datatype, binary))
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input-0", datatype, (3, 4))
    assert tensor.data.dtype == np.dtype(dtype) and (tensor.data == array).all()
    assert request.binary_output  # tritonclient asks for binary outputs by default


def test_binary_decoding_reads_the_received_bytes_without_copying() -> None:
    array = np.random.default_rng(0).normal(size=(1000, 30))
    body, header = triton_request(array, "FP64")
    tensor = v2.decode(body, header, max_rows=1000).inputs[0]
    assert not tensor.data.flags.owndata  # a view on the body: no per-number parsing
    assert (tensor.data == array).all()


def test_binary_strings_decode_for_a_named_column() -> None:
    column = np.array([b"setosa", b"virginica"], dtype=object)
    tensor = triton.InferInput("species", [2], "BYTES")
    tensor.set_data_from_numpy(column)
    body, length = _get_inference_request([tensor], "", None, 0, False, False, 0, None, None)
    request = decode(body, str(length))
    columns = v2.model_input(request, frozenset({"species"}))
    assert isinstance(columns, Columns)
    assert list(columns.values[0]) == ["setosa", "virginica"]


@pytest.mark.parametrize("mangle, header, message", [
    (lambda b: b, "abc", "expected the JSON header's length"),
    (lambda b: b, "0", "must be the length of the JSON"),
    (lambda b: b, "999999", "must be the length of the JSON"),
    (lambda b: b[:-8], None, "only 24 bytes follow the JSON header"),
    (lambda b: b + b"\0" * 8, None, "8 bytes follow the JSON header"),
])
def test_binary_framing_errors_are_400s(mangle: Any, header: str | None,
                                        message: str) -> None:
    body, length = triton_request(np.ones((1, 4)), "FP64")
    with pytest.raises(BadRequestError) as caught:
        decode(mangle(body), header or length)
    assert message in str(caught.value)


def test_a_binary_bool_must_be_zero_or_one() -> None:
    body, length = triton_request(np.array([[True, False]]), "BOOL")
    assert length is not None
    with pytest.raises(BadRequestError, match="BOOL element is a byte of 0 or 1"):
        decode(body[:-1] + b"\x07", length)


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=220))
@settings(max_examples=300, deadline=None)
def test_arbitrary_binary_bodies_decode_or_say_why(body: bytes, header: int) -> None:
    try:
        request = decode(body, str(header))
    except BadRequestError as exc:
        assert str(exc)
        return
    assert request.inputs


# -- what the model is handed ---------------------------------------------------------------


def test_named_columns_become_columns() -> None:
    body = orjson.dumps({"inputs": [
        {"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [5.1, 6.7]},
        {"name": "species", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]},
    ]})
    columns = v2.model_input(decode(body), frozenset({"sepal_length", "species"}))
    assert isinstance(columns, Columns)
    assert columns.names == ("sepal_length", "species") and columns.n_rows == 2
    assert [list(c) for c in columns.values] == [[5.1, 6.7], ["a", "b"]]


def test_one_named_column_of_a_column_model_is_a_column_not_a_matrix() -> None:
    request = decode(json_request([1.0, 2.0], [2, 1], name="x"))
    assert isinstance(v2.model_input(request, frozenset({"x"})), Columns)
    assert isinstance(v2.model_input(request, frozenset()), np.ndarray)


@pytest.mark.parametrize("inputs, columns, message", [
    ([("a", [2])], frozenset(), "takes one tensor of shape [rows, n_features]; got a [2]"),
    ([("a", [2]), ("b", [3])], frozenset({"a", "b"}), "a column is [2] or [2, 1]"),
    ([("a", [2, 2])], frozenset({"a"}), None),  # one [rows, k] tensor: a matrix
])
def test_tensors_that_are_neither_a_matrix_nor_columns(
        inputs: list[tuple[str, list[int]]], columns: frozenset[str],
        message: str | None) -> None:
    body = orjson.dumps({"inputs": [
        {"name": name, "shape": shape, "datatype": "FP64", "data": [1.0] * int(np.prod(shape))}
        for name, shape in inputs]})
    request = decode(body)
    if message is None:
        assert isinstance(v2.model_input(request, columns), np.ndarray)
        return
    with pytest.raises(BadRequestError) as caught:
        v2.model_input(request, columns)
    assert message in str(caught.value)


def test_a_bytes_matrix_is_refused() -> None:
    request = decode(json_request(["a", "b"], [1, 2], "BYTES"))
    with pytest.raises(BadRequestError, match="must be numbers, not BYTES"):
        v2.model_input(request, frozenset())


# -- answers --------------------------------------------------------------------------------


def test_json_answer_names_version_and_echoes_the_id() -> None:
    body, header_length = v2.encode("iris", "3", "req-1", [
        v2.Output("predict", [0, 2], binary=False),
        v2.Output("predict_proba", [[1.0, 0.0], [0.25, 0.75]], binary=False)])
    assert header_length is None
    assert orjson.loads(body) == {"model_name": "iris", "model_version": "3", "id": "req-1",
                                  "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 2]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [2, 2],
         "data": [1.0, 0.0, 0.25, 0.75]}]}


def test_binary_answers_read_back_with_tritonclient() -> None:
    body, header_length = v2.encode("iris", "3", None, [
        v2.Output("predict", ["setosa", "virginica"], binary=True),
        v2.Output("predict_proba", [[1.0, 0.0], [0.25, 0.75]], binary=True)])
    result = triton.InferResult.from_response_body(body, header_length=header_length)
    assert result.as_numpy("predict").tolist() == [b"setosa", b"virginica"]
    assert result.as_numpy("predict_proba").tolist() == [[1.0, 0.0], [0.25, 0.75]]
    assert result.get_response()["model_version"] == "3"


def test_binary_bytes_elements_are_length_prefixed() -> None:
    assert v2_binary.to_bytes(["ab", ""], "BYTES") == (
        struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0))
