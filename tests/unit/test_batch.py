"""BatchRouter: small batches on numpy, large ones on scikit-learn once it has loaded in
the background; both give the same answers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from inferd.common.errors import BadRequestError
from inferd.model.batch import BatchRouter
from inferd.model.compiled.compile import compile_into, load_compiled
from inferd.model.loaded import LoadedModel
from tests.fakes import iris_forest, write_model


@pytest.fixture()
def slot(tmp_path: Path) -> Path:
    forest = iris_forest(n_estimators=10, seed=2)
    write_model(tmp_path / "model" / "model.joblib", forest)
    assert compile_into(tmp_path, forest, np.zeros((1, 4)))["form"] == "compiled"
    return tmp_path


def test_large_batches_move_to_sklearn_once_loaded(slot: Path) -> None:
    compiled = load_compiled(slot)
    router = BatchRouter(compiled, slot / "model", allow_pickle=True, threshold=5.0)
    rows = np.random.default_rng(0).uniform(0, 8, size=(50, 4))
    assert router.engine_for_large_batches == "numpy (scikit-learn idle)"
    first = router.predict(rows)  # answered by numpy while scikit-learn loads
    deadline = time.monotonic() + 60
    while router.engine_for_large_batches != "scikit-learn" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.engine_for_large_batches == "scikit-learn"
    assert np.array_equal(router.predict(rows), first)
    assert np.array_equal(router.predict(rows[:1]), compiled.predict(rows[:1]))


def test_disabled_router_keeps_numpy(slot: Path) -> None:
    router = BatchRouter(load_compiled(slot), slot / "model", allow_pickle=True,
                         enabled=False, threshold=1.0)
    router.predict(np.ones((100, 4)))
    assert router.engine_for_large_batches == "numpy"


def test_compiled_overflow_is_a_bad_request(slot: Path) -> None:
    router = BatchRouter(load_compiled(slot), slot / "model", allow_pickle=True)
    model = LoadedModel(1, {"version": "1"}, router, 4, form="compiled")
    with pytest.raises(BadRequestError, match="too large"):
        model.predict(np.array([[1e300, 0.0, 0.0, 0.0]]))
