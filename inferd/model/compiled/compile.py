"""Compile a fitted estimator into a slot, and open a compiled slot in a worker.

`compile_into` runs in the process doing a reload, on the staging directory, after
the estimator passed its smoke test and before the manifest is written (so the arrays
get checksums like every other file). It verifies the compiled form against the
estimator's own `predict` before keeping it; anything unsupported or unequal leaves
no `compiled/` directory and the slot is served by the ordinary loader.

`load_compiled` runs in every worker: numpy and the files only.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inferd.model.compiled import format as fmt
from inferd.model.compiled.format import ArrayReader, ArrayWriter, CompiledFormatError, Unsupported
from inferd.model.compiled.linear import SUPPORTED as LINEAR
from inferd.model.compiled.linear import LinearModel, compile_linear
from inferd.model.compiled.pipeline import Steps, compile_steps
from inferd.model.compiled.trees import SUPPORTED as TREES
from inferd.model.compiled.trees import TreeEnsemble, compile_trees

log = logging.getLogger("inferd.compiled")

VERIFY_ROWS = 512


class _Final(Protocol):
    def predict(self, rows: np.ndarray) -> np.ndarray: ...


class CompiledModel:
    """A compiled model opened in this process. Immutable; shared by the threads."""

    def __init__(self, header: dict[str, Any], steps: Steps, final: _Final) -> None:
        self.header = header
        self.estimator_name = str(header.get("estimator"))
        self.n_features = int(header["n_features"])
        self.steps = steps
        self.final = final

    @property
    def trees(self) -> TreeEnsemble | None:
        return self.final if isinstance(self.final, TreeEnsemble) else None

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.final.predict(self.steps.apply(rows))


def compile_into(slot_dir: Path, estimator: Any, smoke_rows: np.ndarray) -> dict[str, Any]:
    """Write `slot_dir/compiled/` for `estimator` if it is supported and verifies;
    return the facts for the manifest (`form` and, when compiled, `compiled`)."""
    directory = slot_dir / fmt.DIR_NAME
    writer = ArrayWriter()
    try:
        header: dict[str, Any] = {"format": fmt.FORMAT, "estimator": type(estimator).__name__,
                                  "n_features": _n_features(estimator),
                                  "model": _spec(estimator, writer)}
    except Unsupported as exc:
        return {"form": "fallback", "fallback_reason": f"not compiled: {exc}"}
    # Compiling is an optimisation: whatever goes wrong from here (an estimator that is
    # not quite what its class name promised, a full disk, a mismatch) leaves the slot
    # to its ordinary loader rather than failing a reload the model itself passed.
    try:
        writer.write(directory)
        fmt.write_header(directory, header)
        compiled = load_compiled(slot_dir)
        rows = verification_rows(smoke_rows)
        equal = np.array_equal(np.asarray(estimator.predict(rows)), compiled.predict(rows))
    except Exception as exc:
        equal, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "its predictions differ from scikit-learn's"
    if not equal:
        shutil.rmtree(directory, ignore_errors=True)
        log.warning("Compiled form refused; the slot serves the model with its own loader",
                    extra={"event": "compile_refused", "error": why})
        return {"form": "fallback", "fallback_reason": f"compiled form refused: {why}"}
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {"form": "compiled", "compiled": {"kind": header["model"]["kind"], "bytes": size}}


def verification_rows(smoke_rows: np.ndarray, count: int = VERIFY_ROWS) -> np.ndarray:
    """The smoke rows plus random rows around them and around zero, so verification
    reaches more than one leaf or class."""
    rng = np.random.default_rng(0)
    width = smoke_rows.shape[1]
    around = smoke_rows[rng.integers(0, len(smoke_rows), count // 2)]
    spread = np.abs(around) + 1.0
    return np.vstack([smoke_rows, around + rng.normal(size=around.shape) * spread,
                      rng.normal(size=(count - count // 2, width)) * 3])


def _n_features(estimator: Any) -> int:
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise Unsupported(f"{type(estimator).__name__} without n_features_in_")
    return int(n)


def _spec(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    try:
        return _estimator_spec(estimator, writer)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise Unsupported(f"{type(estimator).__name__} ({type(exc).__name__}: {exc})") from exc


def _estimator_spec(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name == "Pipeline":
        *transforms, (_, final) = estimator.steps
        return {"kind": "pipeline",
                "steps": compile_steps([t for _, t in transforms], writer),
                "final": _final_spec(final, writer)}
    return _final_spec(estimator, writer)


def _final_spec(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name in TREES:
        return compile_trees(estimator, writer)
    if name in LINEAR:
        return compile_linear(estimator, writer)
    raise Unsupported(name)


def has_compiled(slot_dir: Path) -> bool:
    return (slot_dir / fmt.DIR_NAME / fmt.HEADER_NAME).is_file()


def load_compiled(slot_dir: Path) -> CompiledModel:
    """Open `slot_dir/compiled/`: arrays memory-mapped, every index bounds-checked."""
    directory = slot_dir / fmt.DIR_NAME
    header = fmt.read_header(directory)
    reader = ArrayReader(directory)
    n_features = int(header["n_features"])
    spec = header["model"]
    steps = Steps([], reader, n_features)
    if spec.get("kind") == "pipeline":
        steps = Steps(spec.get("steps"), reader, n_features)
        spec = spec.get("final")
        if not isinstance(spec, dict):
            raise CompiledFormatError("pipeline has no final model")
    return CompiledModel(header, steps, _open_final(spec, reader, n_features))


def _open_final(spec: dict[str, Any], reader: ArrayReader, n_features: int) -> _Final:
    kind = spec.get("kind")
    if kind == "trees":
        return TreeEnsemble(spec, reader, n_features)
    if kind == "linear":
        return LinearModel(spec, reader, n_features)
    raise CompiledFormatError(f"unknown compiled model kind {kind!r}")
