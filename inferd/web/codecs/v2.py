"""Decode an Open Inference Protocol (v2) infer request, and encode its answer.

A request is

    {"id": "...", "parameters": {"binary_data_output": true},
     "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 4],
                 "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}],
     "outputs": [{"name": "predict_proba", "parameters": {"binary_data": true}}]}

with each tensor's `data` flat or nested in row-major order, or, with the binary
extension (`inferd.web.codecs.v2_binary`), its raw bytes after the JSON. What the model
is handed (`model_input`):

- one tensor `[rows, n_features]` of numbers (FP16/32/64, INT and UINT of any width,
  BOOL as 0 and 1): a float64 matrix, as `/predict/`'s `features`;
- one tensor a column, `[rows]` or `[rows, 1]`, named after the columns of the model's
  signature (MLServer's pandas codec): `Columns`, which the model checks against its
  signature as every protocol does.

The model, not the codec, refuses values it cannot take (`inferd.model.enforce`):
non-finite numbers, which only the binary extension can carry, unless it takes missing
values as NaN; a column of a type its signature refuses.

Everything else is a BadRequestError that says what was expected and what came.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson

from inferd.common.errors import BadRequestError
from inferd.model.inputs import OUTPUTS, Columns, ModelInput
from inferd.model.tensors import DATATYPES, NUMPY_DTYPES
from inferd.web.codecs import v2_binary
from inferd.web.codecs.native import json_object, json_type

_EXAMPLE = ('expected a JSON object like {"inputs": [{"name": "input-0", "datatype": "FP64", '
            '"shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}')


# PERF: named tuples, not frozen dataclasses: a request builds several, and a frozen
# dataclass's __init__ costs a microsecond each.
class Tensor(NamedTuple):
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # shaped `shape`; an object array of str for BYTES


class RequestedOutput(NamedTuple):
    name: str
    binary: bool | None  # its `binary_data`; None: the request's `binary_output`


class InferRequest(NamedTuple):
    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...]  # empty: the model's default output
    binary_output: bool  # the request's `binary_data_output`: the default of every output


# -- decoding -------------------------------------------------------------------------------


def decode(body: bytes | bytearray | memoryview, header_length: str | None,
           max_rows: int) -> InferRequest:
    """`header_length`: the request's Inference-Header-Content-Length, None without one."""
    header, tail = v2_binary.split(body, header_length)
    doc = json_object(header, _EXAMPLE)
    parameters = _parameters(doc.get("parameters"), "the request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError(f"'inputs' must be a non-empty list of tensors; {_EXAMPLE}")
    binary = v2_binary.Tail(tail)
    tensors = tuple(_tensor(spec, i, binary, max_rows) for i, spec in enumerate(inputs))
    binary.check_consumed()
    if len({t.name for t in tensors}) != len(tensors):
        raise BadRequestError("two inputs have the same name")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError(f"'id' is a JSON {json_type(request_id)}, expected a string")
    return InferRequest(request_id, tensors, _requested_outputs(doc.get("outputs")),
                        _flag(parameters, "binary_data_output", "the request"))


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"'parameters' of {where} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequestError(f"parameter {key!r} of {where} must be true or false")
    return value


def _shape(value: Any, name: str, max_rows: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            type(d) is int and d >= 0 for d in value):
        raise BadRequestError(
            f"input {name!r}: 'shape' must be a non-empty list of non-negative integers")
    if value[0] == 0:
        raise BadRequestError(f"input {name!r} has no rows (shape {value})")
    if value[0] > max_rows:
        raise BadRequestError(
            f"input {name!r} has {value[0]} rows, more than the limit of {max_rows} "
            "(INFERD_MAX_ROWS); split the request")
    return tuple(value)


def _tensor(spec: Any, index: int, binary: v2_binary.Tail, max_rows: int) -> Tensor:
    if not isinstance(spec, dict):
        raise BadRequestError(f"inputs[{index}] is a JSON {json_type(spec)}, expected a "
                              "tensor object with name, shape, datatype and data")
    name = spec.get("name")
    if not isinstance(name, str):
        raise BadRequestError(f"inputs[{index}] needs a 'name' string")
    shape = _shape(spec.get("shape"), name, max_rows)
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        shown = datatype if isinstance(datatype, str) else json_type(datatype)
        raise BadRequestError(
            f"input {name!r}: unknown datatype {str(shown)[:40]!r}; expected one of "
            f"{', '.join(DATATYPES)}")
    count = math.prod(shape)
    parameters = _parameters(spec.get("parameters"), f"input {name!r}")
    if "binary_data_size" in parameters:
        raw = binary.take(parameters["binary_data_size"], name)
        flat = v2_binary.to_array(raw, datatype, count, name)
    elif "data" in spec:
        flat = _from_json(spec["data"], datatype, count, name)
    else:
        raise BadRequestError(f"input {name!r} has neither 'data' nor a binary_data_size")
    return Tensor(name, datatype, shape, flat.reshape(shape))


# Which JSON value types each datatype takes. np.array(dtype=float) would quietly take
# "1.5" and true; a client that sends those has a bug we should report, not guess around.
_FLOATS, _INTS = frozenset({int, float}), frozenset({int})
_JSON_TYPES = {"BOOL": frozenset({bool}), "BYTES": frozenset({str}),
               **{d: _FLOATS if d.startswith("FP") else _INTS for d in NUMPY_DTYPES
                  if d != "BOOL"}}


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequestError(f"input {name!r}: 'data' must be a list of its elements")
    flat = _flatten(data, name)
    if len(flat) != count:
        raise BadRequestError(
            f"input {name!r}: its shape holds {count} elements, but 'data' has {len(flat)}")
    # PERF: the set of element types, built by C-level iterators (as in /predict/).
    if not set(map(type, flat)) <= _JSON_TYPES[datatype]:
        wanted = {"BOOL": "true or false", "BYTES": "strings"}.get(
            datatype, "numbers" if datatype.startswith("FP") else "integers")
        raise BadRequestError(f"input {name!r}: {datatype} elements must be {wanted}")
    if datatype == "BYTES":
        return np.array(flat, dtype=object)
    try:
        return np.array(flat, dtype=NUMPY_DTYPES[datatype])
    except OverflowError:
        raise BadRequestError(f"input {name!r}: a value is out of the range of "
                              f"{datatype}") from None


def _flatten(data: list[Any], name: str) -> list[Any]:
    """Row-major elements of flat or nested `data` (every level of one type)."""
    while data and type(data[0]) is list:
        if set(map(type, data)) != {list}:
            raise BadRequestError(f"input {name!r}: 'data' mixes lists and elements")
        data = list(chain.from_iterable(data))
    return data


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequestError("'outputs' must be a list of {\"name\": ...} objects")
    outputs = []
    for spec in value:
        name = spec.get("name") if isinstance(spec, dict) else None
        if name not in OUTPUTS:
            raise BadRequestError(
                f"unknown output {str(name)[:40]!r}; the outputs are {', '.join(OUTPUTS)}")
        parameters = _parameters(spec.get("parameters"), f"output {name!r}")
        if "classification" in parameters:
            raise BadRequestError("the classification extension is not supported; ask "
                                  "for predict_proba and the model metadata's classes")
        binary = (_flag(parameters, "binary_data", f"output {name!r}")
                  if "binary_data" in parameters else None)
        outputs.append(RequestedOutput(name, binary))
    if len({o.name for o in outputs}) != len(outputs):
        raise BadRequestError("an output is requested twice")
    return tuple(outputs)


# -- what the model takes -------------------------------------------------------------------


def model_input(request: InferRequest, columns: frozenset[str]) -> ModelInput:
    """The request's tensors as the predict use case takes them. `columns`: the
    input columns the model's signature names (empty: the model takes a matrix)."""
    tensors = request.inputs
    first = tensors[0]
    if len(tensors) == 1 and first.data.ndim == 2 and not (
            first.name in columns and first.shape[1] == 1):
        return _matrix(first)
    if not columns:
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in tensors)
        raise BadRequestError(
            f"this model takes one tensor of shape [rows, n_features]; got {shapes}")
    return _columns(tensors)


def _matrix(tensor: Tensor) -> np.ndarray:
    # Non-finite values (only the binary extension can send them) are the model's to
    # refuse: one that takes missing values takes NaN (`inferd.model.enforce`).
    if tensor.datatype == "BYTES":
        raise BadRequestError(
            f"input {tensor.name!r}: a [rows, n_features] tensor must be numbers, not BYTES")
    return tensor.data.astype(np.float64, copy=False)


def _columns(tensors: tuple[Tensor, ...]) -> Columns:
    n_rows = tensors[0].shape[0]
    values: list[Any] = []
    for tensor in tensors:
        if tensor.shape not in ((n_rows,), (n_rows, 1)):
            raise BadRequestError(
                f"input {tensor.name!r} has shape {list(tensor.shape)}; a column is "
                f"[{n_rows}] or [{n_rows}, 1], as long as the first input")
        values.append(tensor.data.reshape(n_rows))
    return Columns(tuple(t.name for t in tensors), tuple(values), n_rows)


# -- encoding -------------------------------------------------------------------------------


class Output(NamedTuple):
    name: str
    values: list[Any]  # one prediction a row (a value, or a row of values)
    binary: bool


def _datatype_and_shape(values: list[Any]) -> tuple[str, list[int]]:
    first = values[0]
    if type(first) is list:
        return _scalar_datatype(first[0] if first else 0.0), [len(values), len(first)]
    return _scalar_datatype(first), [len(values)]


def _scalar_datatype(value: Any) -> str:
    if type(value) is bool:
        return "BOOL"
    if type(value) is int:
        return "INT64"
    return "FP64" if type(value) is float else "BYTES"


def encode(model_name: str, version: str, request_id: str | None,
           outputs: list[Output]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it
    (the response's Inference-Header-Content-Length), else None."""
    tensors = []
    tails = []
    for output in outputs:
        datatype, shape = _datatype_and_shape(output.values)
        tensor: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": shape}
        flat = output.values if len(shape) == 1 else list(chain.from_iterable(output.values))
        if output.binary:
            raw = v2_binary.to_bytes(flat, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
        else:
            tensor["data"] = flat
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": version,
                           "outputs": tensors}
    if request_id is not None:
        doc["id"] = request_id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tails:
        return header, None
    return header + b"".join(tails), len(header)

