"""Validate a staged slot before it is published.

Runs in the process doing the reload, before the flip: the model must load with
the same rules a worker uses (`inferd.model.artifact`) and answer a smoke prediction on the
model's own input example, or on one row of zeros of the right width. A failure
raises ModelLoadError and the staged slot is thrown away; the old slot stays current.
A skops file that names types inferd trusts only to compile (`inferd.model.artifact`) must
compile, or the reload fails. A model that passes is then compiled into the staging
slot when it can be (`inferd.model.compiled`), so the manifest written next checksums the
arrays too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import ModelLoadError
from inferd.model.artifact import UntrustedTypesError, load_model_dir


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
    n_features = getattr(estimator, "n_features_in_", None)
    if artifact.input_example is not None:
        rows = np.asarray(artifact.input_example, dtype=np.float64)
    elif n_features is not None:
        rows = np.zeros((1, int(n_features)))
    else:
        raise ModelLoadError(
            "cannot smoke-test the model: it has no input example and no n_features_in_"
        )
    try:
        out = np.asarray(estimator.predict(rows))
    except Exception as exc:
        raise ModelLoadError(f"smoke prediction failed: {exc}") from exc
    if out.shape[:1] != rows.shape[:1]:
        raise ModelLoadError(
            f"smoke prediction returned {out.shape[0] if out.ndim else 0} results "
            f"for {rows.shape[0]} rows"
        )
    facts: dict[str, Any] = {"form": "fallback"}
    if compile_into is not None:
        from inferd.model.compiled.compile import compile_into as compile_slot

        facts = compile_slot(compile_into, estimator, rows)
    if only_compiled is not None and facts["form"] != "compiled":
        # The workers would have to trust these types to serve it with scikit-learn.
        raise ModelLoadError(f"{only_compiled}, trusted only to compile the model, and "
                             f"{facts.get('fallback_reason')}")
    return {
        **facts,
        "artifact": {
            "path": str(artifact.path.relative_to(model_dir.parent)),
            "format": artifact.format,
        },
        "estimator": type(estimator).__name__,
        "n_features": int(n_features) if n_features is not None else None,
    }
