"""Every scikit-learn estimator a loaded model holds, however deeply nested.

A model's trees are not only in `steps` and `estimators_`: they hide under
`final_estimator_` (stacking), `best_estimator_` (a search), `estimator_` (a
selector, a meta-estimator), `transformers_` (a column transformer),
`calibrated_classifiers_`, `named_estimators_`... Listing the attributes would miss
the next one scikit-learn adds, so `reachable_estimators` walks every attribute of
every estimator it finds, through lists, tuples, dicts and object arrays, each object
once. Whatever it returns is then checked by `inferd.model.artifact.check_trees`.

Runs where a model is loaded (the reload child, a worker loading a fallback slot),
with scikit-learn already imported by the loader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.common.errors import ModelLoadError

# A loaded model is bounded by its file; this bounds the walk against a crafted one.
_MAX_OBJECTS = 1_000_000


def reachable_estimators(model: Any) -> list[Any]:
    """`model` and every scikit-learn object reachable from its attributes (estimators,
    and the helpers that hold them)."""
    from sklearn.base import BaseEstimator

    found: list[Any] = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if len(seen) > _MAX_OBJECTS:
            raise ModelLoadError("the model holds too many nested objects to check")
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif obj is model or isinstance(obj, BaseEstimator) or _from_sklearn(obj):
            found.append(obj)
            stack.extend(getattr(obj, "__dict__", {}).values())
    return found


def _from_sklearn(obj: Any) -> bool:
    # Helpers that are no estimators but hold one, e.g. calibration's _CalibratedClassifier.
    return str(getattr(type(obj), "__module__", "")).startswith("sklearn.")
