"""Compile a fitted estimator into a slot, and open a compiled slot in a worker.

`compile_into` runs in the process doing a reload, on the staging directory, after
the estimator passed its smoke test and before the manifest is written (so the arrays
get checksums like every other file). It verifies the compiled form against the
estimator's own `predict` and `predict_proba` before keeping it; anything unsupported
or unequal leaves no `compiled/` directory and the slot is served by the ordinary loader.

`load_compiled` runs in every worker: numpy and the files only.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inferd.model.compiled import format as fmt
from inferd.model.compiled.boosting import SUPPORTED as BOOSTING
from inferd.model.compiled.boosting import compile_boosting
from inferd.model.compiled.forests import SUPPORTED as FORESTS
from inferd.model.compiled.forests import compile_forest
from inferd.model.compiled.format import ArrayReader, ArrayWriter, CompiledFormatError, Unsupported
from inferd.model.compiled.linear import SUPPORTED as LINEAR
from inferd.model.compiled.linear import LinearModel, compile_linear
from inferd.model.compiled.pipeline import Steps, compile_steps
from inferd.model.compiled.trees import TreeEnsemble

log = logging.getLogger("inferd.compiled")

VERIFY_ROWS = 512


class _Final(Protocol):
    def predict(self, rows: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, rows: np.ndarray) -> np.ndarray: ...

    @property
    def has_proba(self) -> bool: ...


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

    @property
    def has_proba(self) -> bool:
        return self.final.has_proba

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        if not self.final.has_proba:
            raise ValueError(f"the compiled {self.estimator_name} has no predict_proba")
        return self.final.predict_proba(self.steps.apply(rows))


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
        why = disagreement(estimator, compiled, verification_rows(smoke_rows, estimator))
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    equal = why is None
    if not equal:
        shutil.rmtree(directory, ignore_errors=True)
        log.warning("Compiled form refused; the slot serves the model with its own loader",
                    extra={"event": "compile_refused", "error": why})
        return {"form": "fallback", "fallback_reason": f"compiled form refused: {why}"}
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {"form": "compiled", "compiled": {"kind": header["model"]["kind"], "bytes": size}}


def disagreement(estimator: Any, compiled: CompiledModel, rows: np.ndarray) -> str | None:
    """Why the compiled form is not the estimator to the bit on `rows`, or None."""
    if not np.array_equal(np.asarray(estimator.predict(rows)), compiled.predict(rows)):
        return "its predictions differ from scikit-learn's"
    if hasattr(estimator, "predict_proba") and not compiled.has_proba:
        return "it has no predict_proba, which scikit-learn's model has"
    if compiled.has_proba and hasattr(estimator, "predict_proba"):
        expected = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
        got = compiled.predict_proba(rows)
        # Bit for bit: NaN where the library has NaN, and no other difference at all.
        if expected.shape != got.shape or not np.array_equal(
                expected.view(np.uint64), got.view(np.uint64)):
            return "its probabilities differ from scikit-learn's"
    return None


def verification_rows(smoke_rows: np.ndarray, estimator: Any = None,
                      count: int = VERIFY_ROWS) -> np.ndarray:
    """The smoke rows plus random rows around them and around zero, so verification
    reaches more than one leaf or class; then, where the estimator takes them, the
    same rows with missing values, and with its categorical features' known values."""
    rng = np.random.default_rng(0)
    width = smoke_rows.shape[1]
    around = smoke_rows[rng.integers(0, len(smoke_rows), count // 2)]
    spread = np.abs(around) + 1.0
    rows = np.vstack([smoke_rows, around + rng.normal(size=around.shape) * spread,
                      rng.normal(size=(count - count // 2, width)) * 3])
    if estimator is None:
        return rows
    categorical = _with_categories(rows, estimator, rng)
    extra = [] if categorical is None else [categorical]
    holes = np.where(rng.random(rows.shape) < 0.2, np.nan, rows)
    try:
        estimator.predict(np.full((1, width), np.nan))
    except ValueError:
        pass  # the estimator refuses NaN, and so does its compiled form
    else:
        extra += [holes, *[np.where(rng.random(rows.shape) < 0.2, np.nan, e) for e in extra]]
    return np.vstack([rows, *extra])


def _with_categories(rows: np.ndarray, estimator: Any,
                     rng: np.random.Generator) -> np.ndarray | None:
    final = estimator.steps[-1][1] if type(estimator).__name__ == "Pipeline" else estimator
    mask = getattr(final, "is_categorical_", None)
    preprocessor = getattr(final, "_preprocessor", None)
    if mask is None or preprocessor is None or type(estimator).__name__ == "Pipeline":
        return None
    out = rows.copy()
    categories = preprocessor.named_transformers_["encoder"].categories_
    for column, known in zip(np.flatnonzero(mask), categories, strict=True):
        # Known values mostly, plus unknown and negative ones.
        choices = np.append(np.asarray(known, dtype=np.float64), [-1.0, 1e6, 0.5])
        out[:, column] = rng.choice(choices, size=len(out))
    return out


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
    if name in FORESTS:
        return compile_forest(estimator, writer)
    if name in BOOSTING:
        return compile_boosting(estimator, writer)
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
