"""Named fakes, in one place. Models are real scikit-learn objects or tiny classes
that pickle by reference to this module; storage is never faked."""

from __future__ import annotations

import contextlib
import socket
import threading
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


class StalledRegistry:
    """A loopback TCP server that accepts connections and never answers: a registry
    that hangs. Use as a context manager; `url` is its http:// address."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self._held.append(conn)  # keep it open, read nothing, answer nothing

    def __enter__(self) -> StalledRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
