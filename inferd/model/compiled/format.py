"""The on-disk format of a compiled model, and opening it safely.

Layout, inside a slot directory::

    compiled/model.json        header: {"format": 2, "estimator": <class name>,
                               "n_features": int, "model": <model spec>}
    compiled/arrays/<name>.npy one array each, plain .npy (no pickled objects)

A model spec is a JSON object with a `kind` ("trees", "linear", "pipeline") and, for
every array it uses, an entry `{"array": name, "dtype": str, "shape": [...]}` in its
`arrays` object. `ArrayReader` opens each named file with `mmap_mode="r"` and
`allow_pickle=False`, and refuses it unless dtype and shape are exactly what the header
says: a truncated, swapped or hostile file raises CompiledFormatError on open, never
garbage at predict time. Indices inside the arrays are checked by the model modules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import ModelLoadError

FORMAT = 2
# Format 2 added arrays for missing values, categories and boosting to the tree table
# and reads format 1's arrays unchanged, so slots written by the previous version
# still load (`inferd.model.compiled.trees`).
READABLE_FORMATS = (1, 2)
DIR_NAME = "compiled"
HEADER_NAME = "model.json"
ARRAYS_DIR = "arrays"
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
# Array dtypes a compiled model may use; object arrays (pickles) are never among them.
_ALLOWED_KINDS = {"i", "u", "f", "b", "U"}


class CompiledFormatError(ModelLoadError):
    """A compiled model on disk is not in the format inferd writes."""


class Unsupported(Exception):  # noqa: N818 (a verdict, not a failure)
    """This estimator has no compiled form; the slot serves it with its own loader."""


class ArrayWriter:
    """Collects arrays while a model is compiled and writes them to `arrays/`."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, array: Any) -> dict[str, Any]:
        arr = np.asarray(array)
        if arr.dtype.kind not in _ALLOWED_KINDS:
            raise Unsupported(f"array {name} has dtype {arr.dtype}, which needs pickle")
        if not _NAME.match(name) or name in self.arrays:
            raise ValueError(f"bad or duplicate array name {name!r}")
        self.arrays[name] = arr
        return {"array": name, "dtype": arr.dtype.str, "shape": list(arr.shape)}

    def write(self, directory: Path) -> None:
        arrays_dir = directory / ARRAYS_DIR
        arrays_dir.mkdir(parents=True, exist_ok=True)
        for name, arr in self.arrays.items():
            # np.save keeps Fortran order, so a transposed coefficient matrix is read back
            # with the same memory layout and BLAS takes the same path as scikit-learn.
            np.save(arrays_dir / f"{name}.npy", arr, allow_pickle=False)


class ArrayReader:
    """Opens the arrays a header names, memory-mapped and checked against the header."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / ARRAYS_DIR

    def open(self, ref: Any, dtype_kind: str | None = None, ndim: int | None = None) -> np.ndarray:
        if not isinstance(ref, dict) or not _NAME.match(str(ref.get("array", ""))):
            raise CompiledFormatError(f"bad array reference {ref!r} in {HEADER_NAME}")
        name = ref["array"]
        path = self.directory / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CompiledFormatError(f"cannot open compiled array {name}: {exc}") from exc
        if (not isinstance(arr, np.ndarray) or arr.dtype.str != ref.get("dtype")
                or list(arr.shape) != ref.get("shape")):
            raise CompiledFormatError(
                f"compiled array {name} is {getattr(arr, 'dtype', '?')} "
                f"{list(getattr(arr, 'shape', ()))}, the header says {ref.get('dtype')} "
                f"{ref.get('shape')} (altered or truncated file)"
            )
        if dtype_kind is not None and arr.dtype.kind not in dtype_kind:
            raise CompiledFormatError(f"compiled array {name} has dtype {arr.dtype}, "
                                      f"expected kind {dtype_kind!r}")
        if ndim is not None and arr.ndim != ndim:
            raise CompiledFormatError(f"compiled array {name} has {arr.ndim} dimensions, "
                                      f"expected {ndim}")
        # A plain ndarray view of the same mapped pages: np.memmap's Python-level
        # __getitem__/__array_wrap__ cost more than the indexing itself on small batches.
        return arr.view(np.ndarray)


def write_header(directory: Path, header: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / HEADER_NAME).write_bytes(json.dumps(header, indent=1, sort_keys=True).encode())


def read_header(directory: Path) -> dict[str, Any]:
    path = directory / HEADER_NAME
    try:
        header = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CompiledFormatError(f"cannot read {path}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") not in READABLE_FORMATS:
        found = header.get("format") if isinstance(header, dict) else None
        raise CompiledFormatError(
            f"{path} is a compiled model of format {found!r}; this inferd reads formats "
            f"{READABLE_FORMATS} (publish the model again to recompile it)")
    if not isinstance(header.get("model"), dict) or not _positive_int(header.get("n_features")):
        raise CompiledFormatError(f"{path} has no model spec or no n_features")
    return header


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def spec_int(spec: dict[str, Any], key: str, minimum: int = 0) -> int:
    """An integer field of a header, refused unless it is one and at least `minimum`."""
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CompiledFormatError(f"header field {key}={value!r} is not an integer >= {minimum}")
    return value


def spec_choice(spec: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = spec.get(key)
    if value not in allowed:
        raise CompiledFormatError(f"header field {key}={value!r} is not one of {allowed}")
    return str(value)
