"""Validate a staged slot before it is published.

Runs in the process doing the reload, before the flip: the model must load with
the same rules a worker uses (`inferd.model.artifact`), agree with its MLflow signature
(`inferd.model.signature`), and answer a smoke prediction on the model's own input
example, or on one row of zeros (empty strings) of the right width, given to it as a
worker would give a request (`inferd.model.enforce`). A failure raises ModelLoadError and
the staged slot is thrown away; the old slot stays current.
A skops file that names types inferd trusts only to compile (`inferd.model.artifact`) must
compile, or the reload fails. A model that passes is then compiled into the staging
slot when it can be (`inferd.model.compiled`), so the manifest written next checksums the
arrays too.

The facts returned go into the manifest; the protocols rely on these keys:
`signature` and `predict_fn` (`inferd.model.signature`), `classes` (the estimator's
`classes_` as a JSON list, None for a regressor) and `input_kind`: "matrix" when the
model takes a float matrix, "frame" when it needs a pandas DataFrame (string, binary or
datetime columns, or a pipeline that selects its columns by name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import BadRequestError, ModelLoadError
from inferd.model.artifact import UntrustedTypesError, load_model_dir
from inferd.model.enforce import InputRules
from inferd.model.inputs import OUTPUTS, Columns
from inferd.model.loaded import model_input
from inferd.model.signature import ModelDescription, check_agrees, describe_model_dir, needs_frame


def validate_staged(model_dir: Path, allow_pickle: bool,
                    compile_into: Path | None = None) -> dict[str, Any]:
    """Load and smoke-test the model in `model_dir`; return facts for the manifest.
    With `compile_into` (the staging slot), also write its compiled form there."""
    try:
        artifact, estimator = load_model_dir(model_dir, allow_pickle)
        only_compiled: UntrustedTypesError | None = None
    except UntrustedTypesError as exc:
        if compile_into is None or not exc.compile_only:
            raise
        artifact, estimator = load_model_dir(model_dir, allow_pickle, to_compile=True)
        only_compiled = exc
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(f"{type(estimator).__name__} has no predict method")
    description = describe_model_dir(model_dir)
    n_features = _int_or_none(getattr(estimator, "n_features_in_", None))
    feature_names = _feature_names(estimator)
    check_agrees(description.signature, n_features, feature_names)
    classes = _classes(estimator)
    _check_predict_fn(description.predict_fn, estimator, classes)
    facts: dict[str, Any] = {
        "signature": description.signature,
        "predict_fn": description.predict_fn,
        "classes": classes,
        "feature_names": feature_names,
    }
    rows = _smoke_test(estimator, description, facts, n_features)
    if facts["input_kind"] == "matrix":
        facts["accepts_nan"] = _accepts_nan(estimator, rows.shape[1])
    form: dict[str, Any] = {"form": "fallback"}
    if facts["input_kind"] == "frame":
        form["fallback_reason"] = "not compiled: the model takes a DataFrame"
    elif compile_into is not None:
        from inferd.model.compiled.compile import compile_into as compile_slot

        form = compile_slot(compile_into, estimator, rows)
    if only_compiled is not None and form["form"] != "compiled":
        # The workers would have to trust these types to serve it with scikit-learn.
        raise ModelLoadError(f"{only_compiled}, trusted only to compile the model, and "
                             f"{form.get('fallback_reason')}")
    return {
        **form,
        **facts,
        "artifact": {
            "path": str(artifact.path.relative_to(model_dir.parent)),
            "format": artifact.format,
        },
        "estimator": type(estimator).__name__,
        "n_features": n_features,
    }


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _feature_names(estimator: Any) -> list[str] | None:
    names = getattr(estimator, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _classes(estimator: Any) -> list[Any] | None:
    # None for a regressor, and for a Pipeline whose last step has no classes_ (its
    # property raises AttributeError, which getattr's default covers).
    classes = getattr(estimator, "classes_", None)
    return np.asarray(classes).tolist() if classes is not None else None


def _check_predict_fn(predict_fn: str, estimator: Any, classes: list[Any] | None) -> None:
    if predict_fn not in OUTPUTS:
        raise ModelLoadError(f"the model was logged with pyfunc_predict_fn={predict_fn!r}; "
                             f"inferd answers {' or '.join(OUTPUTS)}")
    if predict_fn == "predict_proba" and (classes is None
                                          or not hasattr(estimator, "predict_proba")):
        raise ModelLoadError("the model was logged with pyfunc_predict_fn='predict_proba' "
                             f"but {type(estimator).__name__} has no class probabilities")


def _smoke_test(estimator: Any, description: ModelDescription, facts: dict[str, Any],
                n_features: int | None) -> np.ndarray:
    """Predict the example as a worker would; set facts["input_kind"] to the form of
    input the model takes. Return the float rows (matrix) or an empty (0, 0) array."""
    example: Any = description.example
    if example is None:
        example = _default_example(description.signature, n_features)
    if isinstance(example, list):
        example = _rows(example)
    matrix_error: Exception | None = None
    if not needs_frame(description.signature):
        rules = InputRules.from_manifest({**facts, "input_kind": "matrix",
                                          "accepts_nan": True}, n_features)
        try:
            rows = model_input(rules, example)
            _check_answer(estimator, rows, rows.shape[0])
            facts["input_kind"] = "matrix"
            return rows
        except (BadRequestError, ModelLoadError) as exc:
            matrix_error = exc
            if facts["signature"] is None and facts["feature_names"] is None:
                raise ModelLoadError(f"smoke prediction failed: {exc}") from exc
    # Named columns a float matrix cannot carry, or a model that needs them by name.
    rules = InputRules.from_manifest({**facts, "input_kind": "frame"}, n_features)
    try:
        frame = model_input(rules, example)
        _check_answer(estimator, frame, len(frame))
    except (BadRequestError, ModelLoadError) as exc:
        first = f" (as a float matrix: {matrix_error})" if matrix_error else ""
        raise ModelLoadError(f"smoke prediction failed: {exc}{first}") from exc
    facts["input_kind"] = "frame"
    return np.empty((0, 0))


def _check_answer(estimator: Any, inputs: Any, n_rows: int) -> None:
    try:
        out = np.asarray(estimator.predict(inputs))
    except Exception as exc:
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
    if out.shape[:1] != (n_rows,):
        raise ModelLoadError(
            f"smoke prediction returned {out.shape[0] if out.ndim else 0} results "
            f"for {n_rows} rows")


def _default_example(signature: dict[str, Any] | None,
                     n_features: int | None) -> Columns | np.ndarray:
    if signature is not None and signature["kind"] == "columns" and all(
            isinstance(s["name"], str) for s in signature["inputs"]):
        specs = signature["inputs"]
        return Columns(tuple(s["name"] for s in specs),
                       tuple([_ZERO.get(s["type"], 0)] for s in specs), 1)
    if n_features is None:
        raise ModelLoadError(
            "cannot smoke-test the model: it has no input example and no n_features_in_")
    return np.zeros((1, n_features))


_ZERO = {"string": "", "binary": "", "datetime": "1970-01-01"}


def _rows(example: list[list[Any]]) -> np.ndarray:
    try:
        rows = np.asarray(example, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"the model's input example is not rows of numbers: {exc}") from exc
    if rows.ndim != 2 or not rows.size:
        raise ModelLoadError("the model's input example is not a list of rows")
    return rows


def _accepts_nan(estimator: Any, width: int) -> bool:
    """Whether the model answers a row of missing values (trees since scikit-learn 1.4,
    histogram gradient boosting) rather than refusing it."""
    try:
        estimator.predict(np.full((1, width), np.nan))
    except Exception:
        return False
    return True
