"""Bodies and answers of the Open Inference Protocol v2, as a benchmark's client sends
and reads them: JSON tensors and the binary tensor extension."""

from __future__ import annotations

import numpy as np
import orjson
import requests

HEADER = "Inference-Header-Content-Length"
V2_MODEL_NAME = "iris-model"  # MLFLOW_MODEL_NAME's default: what inferd's v2 routes name



def v2_json(rows: np.ndarray) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64",
                                     "shape": list(rows.shape), "data": rows.ravel()}]},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def v2_binary(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps({
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                    "parameters": {"binary_data_size": rows.nbytes}}],
        "parameters": {"binary_data_output": True}})
    body = header + np.ascontiguousarray(rows, dtype="<f8").tobytes()
    return body, {HEADER: str(len(header))}


def v2_binary_output(resp: requests.Response) -> np.ndarray:
    """The first output of a v2 binary answer, as an array."""
    length = int(resp.headers[HEADER])
    output = orjson.loads(resp.content[:length])["outputs"][0]
    dtype = {"INT64": "<i8", "FP64": "<f8"}[output["datatype"]]
    return np.frombuffer(resp.content, dtype=dtype, offset=length)
