"""Named fakes, in one place. Models are real scikit-learn objects or tiny classes
that pickle by reference to this module; storage is never faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np


class ExplodingModel:
    """Loads fine, fails its smoke prediction: a 'bad new version'."""

    n_features_in_ = 4

    def predict(self, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("this model is broken on purpose")


class ConstantModel:
    """Predicts `value` for every row; lets a test tell versions apart by output."""

    n_features_in_ = 4

    def __init__(self, value: int) -> None:
        self.value = value

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.value)


def iris_forest(n_estimators: int = 5, seed: int = 0) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    features, target = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(
        features, target
    )


def write_model(path: Path, model: object) -> Path:
    """Save `model` with joblib at `path` (atomically, as an operator's deploy would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)
    return path


class ManualClock:
    """A monotonic clock that moves only when a test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
