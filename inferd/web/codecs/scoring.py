"""Decode a request of MLflow's scoring protocol (`POST /invocations`) into `Columns`, and
encode the answer, the way `mlflow models serve` reads and writes them.

MLflow parses a body with pandas and hands the model a DataFrame; this codec builds the
same table as named columns without pandas (`inferd.model.inputs.Columns`), and leaves
what MLflow does with the model's signature (columns by name, type casts, a missing
column) to the model. Reference: MLflow 3.x `mlflow/pyfunc/scoring_server/__init__.py`
(`invocations`, `infer_and_parse_data`, `parse_csv_input`) and
`mlflow/utils/proto_json_utils.py` (`dataframe_from_parsed_json`,
`parse_tf_serving_input`).

A JSON body is an object with exactly one of the four format keys (`params` and other
keys are ignored, as MLflow ignores them for a scikit-learn model):

- `dataframe_split`: `{"columns": [...], "data": [[...], ...], "index": [...]}`; pandas
  pads a short row with nulls;
- `dataframe_records`: `[{"col": v, ...}, ...]`, columns in first-seen order, a missing
  key null;
- `instances`: `[{"col": v}, ...]` (every record with the same keys) or `[[...], ...]`;
- `inputs`: `{"col": [v, ...], ...}`, `[{...}, ...]` or `[[...], ...]`.

Rows given without column names (`[[5.1, 3.5]]`, `dataframe_split` without `columns`)
get pandas' positional labels, `"0"`, `"1"`, ...: a model whose signature names its
columns refuses them as missing columns, as MLflow does; a model with a tensor signature
or none reads them by position. A tensor signature also reads a named table by position
(as MLflow does), but not named tensors (`inputs` / `instances` objects) or CSV, which
MLflow refuses for it (`Columns.by_position`).

A `text/csv` body has a header row; its values stay strings (None for the spellings
pandas reads as missing) for the model's signature to cast, as MLflow's
`read_csv(dtype=...)` does.

Everything malformed is a BadRequestError saying what came and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import orjson

from inferd.common.errors import BadRequestError, UnsupportedMediaTypeError
from inferd.model.inputs import Columns
from inferd.web.codecs.native import json_type

JSON = "application/json"
CSV = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_REQUIRED = ("The input must be a JSON object with exactly one of the input fields "
             "dataframe_split, dataframe_records, instances, inputs")
_SPLIT_KEYS = frozenset({"columns", "data", "index"})
_COLUMNS_AND_DATA = frozenset({"columns", "data"})
_LIST, _STR = {list}, {str}
# pandas.read_csv's default missing-value spellings (`na_values`, pandas 2.x and 3.x).
_CSV_MISSING = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})


def media_type(content_type: str | None) -> str:
    """`JSON` or `CSV` from a Content-Type header, by MLflow's rules: the type compared
    exactly, a `charset` parameter must be UTF-8, any other parameter is refused."""
    if content_type == JSON:  # PERF: what nearly every client sends
        return JSON
    if not content_type:
        # MLflow answers 500 here (it splits None); 415 says what is missing.
        raise UnsupportedMediaTypeError(
            f"no Content-Type header; send {JSON} or {CSV} (with a header row)")
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    pairs = dict(p.partition("=")[::2] for p in parameters)
    if pairs.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaTypeError("The scoring server only supports UTF-8")
    if unknown := sorted(set(pairs) - {"charset"}):
        raise UnsupportedMediaTypeError(
            f"Unrecognized content type parameters: {', '.join(unknown)}")
    if mime not in (JSON, CSV):
        raise UnsupportedMediaTypeError(
            f"This predictor only supports the content types {JSON} and {CSV}; "
            f"got {content_type!r}")
    return mime


def decode(body: bytes | bytearray, mime: str, max_rows: int) -> Columns:
    """The table of a body whose `media_type` is `mime`, at most `max_rows` rows."""
    columns = decode_json(body) if mime == JSON else decode_csv(body)
    if columns.n_rows == 0:
        raise BadRequestError("the input has no rows; send at least one")
    if columns.n_rows > max_rows:
        raise BadRequestError(
            f"the input has {columns.n_rows} rows, more than the limit of {max_rows} "
            "(INFERD_MAX_ROWS); split the request")
    return columns


def encode(predictions: list[Any]) -> bytes:
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


# -- JSON ------------------------------------------------------------------------------


def decode_json(body: bytes | bytearray) -> Columns:
    doc = _load(body)
    if not isinstance(doc, dict):
        raise BadRequestError(f"{_REQUIRED}; received a JSON {json_type(doc)}")
    keys = [key for key in FORMATS if key in doc]
    if len(keys) != 1:
        raise BadRequestError(f"{_REQUIRED}; received the fields {list(doc)}")
    return _FORMATS[keys[0]](doc[keys[0]])


def _load(body: bytes | bytearray) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # MLflow reads bodies with Python's json module, which also takes NaN, Infinity and
    # integers beyond 64 bits; orjson refuses those, so only they pay for a second parse.
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None


def _split(value: Any) -> Columns:
    # PERF: the common shape, rows of one width under as many distinct string names,
    # checked with C-level iterators; any other body takes the checked path below,
    # which gives the same table or says what is wrong.
    if type(value) is dict and value.keys() == _COLUMNS_AND_DATA:
        data, names = value["data"], value["columns"]
        if (type(data) is list and data and type(names) is list
                and set(map(type, data)) == _LIST and set(map(len, data)) == {len(names)}
                and set(map(type, names)) == _STR and len(set(names)) == len(names)):
            return Columns(tuple(names), tuple(zip(*data, strict=True)), len(data))
    return _split_checked(value)


def _split_checked(value: Any) -> Columns:
    if not isinstance(value, dict):
        raise BadRequestError(
            f"dataframe_split must be an object, got a JSON {json_type(value)}")
    if "data" not in value or not value.keys() <= _SPLIT_KEYS:
        raise BadRequestError(
            "dataframe_split must have a 'data' field and optionally 'columns' and "
            f"'index'; got the fields {sorted(value)}")
    data, names = value["data"], value.get("columns")
    if names is not None and not isinstance(names, list):
        raise BadRequestError(
            f"dataframe_split 'columns' must be an array, got a JSON {json_type(names)}")
    if data is None:
        data = []  # pandas: an empty frame
    if not isinstance(data, list):
        raise BadRequestError(
            f"dataframe_split 'data' must be an array of rows, got a JSON {json_type(data)}")
    if data and all(isinstance(row, dict) for row in data):
        table = _records(data)
        return table if names is None else _select(table, _names(names))
    table = _table(data, padded=True, what="dataframe_split 'data'")
    if names is not None and table.n_rows:
        table = _rename(table, _names(names))
    _check_index(value.get("index"), table.n_rows)
    return table


def _records_format(value: Any) -> Columns:
    if not isinstance(value, list):
        raise BadRequestError(
            "dataframe_records must be an array of records, got a JSON "
            f"{json_type(value)}")
    if value and all(isinstance(record, dict) for record in value):
        return _records(value)
    return _table(value, padded=True, what="dataframe_records")


def _instances(value: Any) -> Columns:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        # MLflow turns records into one array a column, which must all be as long.
        table = _records(_all_dicts(value, "instances"), by_position=False)
        if any(len(record) != len(table.names) for record in value):
            raise BadRequestError(
                "The length of values for each input/column name are not the same: every "
                "record of 'instances' must have the same fields")
        return table
    return _inputs(value, "instances")


def _inputs(value: Any, what: str = "inputs") -> Columns:
    # Objects here are named tensors to MLflow, not a table: by_position=False.
    if isinstance(value, dict):
        return _column_arrays(value, what)
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return _records(value, by_position=False)
    if isinstance(value, list):
        return _table(value, padded=False, what=what)
    raise BadRequestError(
        f"'{what}' must be an array of rows, an array of records or an object of "
        f"columns; got a JSON {json_type(value)}")


_FORMATS: dict[str, Callable[[Any], Columns]] = {
    "dataframe_split": _split,
    "dataframe_records": _records_format,
    "instances": _instances,
    "inputs": _inputs,
}


def _table(rows: list[Any], *, padded: bool, what: str) -> Columns:
    """Rows of values, named by position. Rows that are not arrays make one column (as
    pandas reads a flat list). `padded`: a short row is filled with nulls (pandas);
    otherwise rows of unequal length are refused (numpy, MLflow's `inputs`)."""
    if not rows:
        return Columns((), (), 0)
    kinds = set(map(type, rows))
    if list not in kinds:
        if dict in kinds:
            raise BadRequestError(f"{what} mixes records (objects) with other values")
        return Columns(("0",), (rows,), len(rows))
    if kinds != {list}:
        raise BadRequestError(f"{what} mixes rows (arrays) with other values")
    widths = set(map(len, rows))
    width = max(widths)
    if len(widths) > 1:
        if not padded:
            raise BadRequestError(
                f"the rows of '{what}' have different lengths {sorted(widths)}; every row "
                "must have one value a column")
        rows = [row + [None] * (width - len(row)) for row in rows]
    # PERF: zip(*rows) transposes in C; a one-row request is mostly this call.
    values = tuple(zip(*rows, strict=True)) if width else ()
    return Columns(tuple(map(str, range(width))), values, len(rows))


def _records(records: list[dict[str, Any]], *, by_position: bool = True) -> Columns:
    """Records as pandas reads them: columns in first-seen order, a missing key null."""
    names = tuple(dict.fromkeys(chain.from_iterable(records)))
    values = tuple([record.get(name) for record in records] for name in names)
    return Columns(names, values, len(records), by_position)


def _all_dicts(items: list[Any], what: str) -> list[dict[str, Any]]:
    if not all(isinstance(item, dict) for item in items):
        raise BadRequestError(f"'{what}' mixes records (objects) with other values")
    return items


def _column_arrays(columns: dict[str, Any], what: str) -> Columns:
    """`{"col": [v, ...], ...}`: arrays of one length; a plain value is repeated on every
    row (one row if no column is an array), as pandas builds a frame from a dict."""
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) > 1:
        raise BadRequestError(
            f"the columns of '{what}' have different lengths {sorted(lengths)}")
    n_rows = lengths.pop() if lengths else 1
    values = tuple(v if isinstance(v, list) else [v] * n_rows for v in columns.values())
    return Columns(tuple(columns), values, n_rows, by_position=False)


def _names(names: list[Any]) -> tuple[str, ...]:
    if any(isinstance(name, list | dict) for name in names):
        raise BadRequestError("dataframe_split 'columns' must be an array of names")
    # json, not orjson: a name may be an integer beyond 64 bits (read by `_load`).
    labels = tuple(name if isinstance(name, str) else json.dumps(name) for name in names)
    if len(set(labels)) != len(labels):
        duplicated = sorted({n for n in labels if labels.count(n) > 1})
        raise BadRequestError(f"dataframe_split names the columns {duplicated} twice")
    return labels


def _rename(table: Columns, names: tuple[str, ...]) -> Columns:
    if len(names) != len(table.names):
        raise BadRequestError(
            f"dataframe_split names {len(names)} columns but its rows have "
            f"{len(table.names)} values")
    return Columns(names, table.values, table.n_rows)


def _select(table: Columns, names: tuple[str, ...]) -> Columns:
    """pandas' `DataFrame(records, columns=names)`: those columns, null where absent."""
    by_name = dict(zip(table.names, table.values, strict=True))
    absent = [None] * table.n_rows
    return Columns(names, tuple(by_name.get(name, absent) for name in names), table.n_rows)


def _check_index(index: Any, n_rows: int) -> None:
    if index is not None and (not isinstance(index, list) or len(index) != n_rows):
        raise BadRequestError(
            f"dataframe_split 'index' must be an array of one label a row ({n_rows})")


# -- CSV -------------------------------------------------------------------------------


# A field may be as large as a body may be (INFERD_MAX_BODY_BYTES); the csv module's
# default limit, 128 KiB, is process-wide state and only ever raised here.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def decode_csv(body: bytes | bytearray) -> Columns:
    """A CSV table with a header row, as `pandas.read_csv` reads it: blank lines
    skipped, a short row padded with nulls, unnamed and repeated columns named as
    pandas names them. A row longer than the header is refused (pandas would make its
    first fields an index)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the CSV body is not UTF-8: {exc}") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise BadRequestError(f"the CSV body cannot be parsed: {exc}") from None
    if not rows:
        raise BadRequestError("the CSV body is empty; expected a header row and data rows")
    header, data = _csv_names(rows[0]), rows[1:]
    width = len(header)
    if data and max(map(len, data)) > width:
        line = next(i for i, row in enumerate(data, start=2) if len(row) > width)
        raise BadRequestError(
            f"CSV line {line} has more fields than the header's {width}")
    values = tuple(
        [None if i >= len(row) or row[i] in _CSV_MISSING else row[i] for row in data]
        for i in range(width))
    # MLflow cannot read CSV for a tensor signature (parse_csv_input asks the schema
    # for pandas types, which a TensorSpec refuses): by_position=False.
    return Columns(header, values, len(data), by_position=False)


def _csv_names(header: Sequence[str]) -> tuple[str, ...]:
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        base, n = name, 0
        while name in names:  # pandas renames a repeated column "a" to "a.1", "a.2"
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    return tuple(names)
