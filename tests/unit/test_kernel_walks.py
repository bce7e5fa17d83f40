"""The kernel's two walks: the row-major one (`accumulate_rows`) answers what the
tree-major one (`accumulate`) answers, to the bit, for every row count; and each model
gets the walk it should."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)

from inferd.model.compiled import kernel
from inferd.model.compiled.compile import compile_into, load_compiled
from inferd.model.compiled.trees import TreeEnsemble

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _ensemble(tmp_path: Path, model: Any, x: np.ndarray) -> TreeEnsemble:
    slot = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses one tmp_path
    assert compile_into(slot, model, x[:3])["form"] == "compiled"
    trees = load_compiled(slot).trees
    assert trees is not None
    return trees


def _both_walks(trees: TreeEnsemble, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(rows, dtype=np.float64)
    tree_major = np.empty((len(x), 1))
    row_major = np.empty((len(x), 1))
    assert kernel.accumulate(
        x, trees._inputs, trees.children, trees.feature, trees.threshold,
        trees.missing_left, trees.leaf, trees.roots, trees.tree_column, trees.values,
        trees.zero_missing, trees.cat_node, trees.left_bits, trees.cat_feature_row,
        trees.known_bits, trees.baseline, tree_major) == 0
    depth = kernel.tree_depths(trees.children, trees.roots, trees.leaf)
    assert kernel.accumulate_rows(
        x, trees._inputs, trees.children, trees.feature, trees.threshold,
        trees.missing_left, trees.roots, depth, trees.values, trees.zero_missing,
        trees.baseline, row_major) == 0
    return tree_major, row_major


def _models(seed: int, kind: str) -> tuple[Any, np.ndarray]:
    """A model of one raw score a row, of each input rule: float32 and NaN with float32
    sums (XGBoost), float64 with tiny zeros and missing type Zero (LightGBM), float64
    kept as it is (HistGradientBoosting), float32 without NaN (GradientBoosting)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 5))
    y = x[:, 0] + np.sin(3 * x[:, 1]) + rng.normal(scale=0.1, size=300)
    if kind == "xgboost":
        x[rng.random(x.shape) < 0.1] = np.nan
        model: Any = xgboost.XGBRegressor(n_estimators=20, max_depth=5, n_jobs=1,
                                          random_state=seed)
    elif kind == "lightgbm":
        x[rng.random(x.shape) < 0.2] = 0.0
        model = lightgbm.LGBMRegressor(n_estimators=20, num_leaves=15, n_jobs=1,
                                       zero_as_missing=True, verbose=-1,
                                       min_child_samples=3, random_state=seed)
    elif kind == "hist":
        x[rng.random(x.shape) < 0.1] = np.nan
        model = HistGradientBoostingRegressor(max_iter=20, random_state=seed)
    else:
        model = GradientBoostingRegressor(n_estimators=20, max_depth=4, random_state=seed)
    return model.fit(x, y), x


@SETTINGS
@given(seed=st.integers(0, 10_000),
       kind=st.sampled_from(["xgboost", "lightgbm", "hist", "gradient"]),
       rows=st.integers(0, 40))
def test_the_row_major_walk_equals_the_tree_major_one(tmp_path: Path, seed: int, kind: str,
                                                       rows: int) -> None:
    model, x = _models(seed, kind)
    trees = _ensemble(tmp_path, model, x)
    rng = np.random.default_rng(seed + 1)
    # Training rows, and fresh ones with NaN, zeros and values tiny enough to be zero.
    query = np.vstack([x[:rows], rng.normal(size=(rows, x.shape[1]))])
    query[rng.random(query.shape) < 0.15] = np.nan
    query[rng.random(query.shape) < 0.1] = 0.0
    query[rng.random(query.shape) < 0.05] = 1e-36
    if kind == "gradient":
        query = np.nan_to_num(query)
    tree_major, row_major = _both_walks(trees, query)
    assert np.array_equal(tree_major.view(np.uint64), row_major.view(np.uint64))


def test_the_row_major_walk_refuses_what_float32_cannot_hold(tmp_path: Path) -> None:
    model, x = _models(0, "gradient")
    trees = _ensemble(tmp_path, model, x)
    assert trees._depth is not None
    rows = np.zeros((kernel.LANES + 4, x.shape[1]))  # the refused value in the 2nd group
    rows[kernel.LANES + 1, 2] = 1e300
    with pytest.raises(ValueError, match="too large"):
        trees.raw(rows)


def test_tree_depths_are_the_deepest_leaf_of_each_tree(tmp_path: Path) -> None:
    model, x = _models(3, "gradient")
    trees = _ensemble(tmp_path, model, x)
    depth = kernel.tree_depths(trees.children, trees.roots, trees.leaf)
    assert depth.tolist() == [e.tree_.max_depth for e in model.estimators_[:, 0]]


def _x_y(classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    return x, (x[:, 0] > 0).astype(int) + (classes > 2) * (x[:, 1] > 0).astype(int)


@pytest.mark.parametrize("model, row_major", [
    (xgboost.XGBClassifier(n_estimators=10, n_jobs=1), True),
    (HistGradientBoostingClassifier(max_iter=10), True),
    # several raw-score columns, class rows in the leaves, categorical splits:
    (xgboost.XGBClassifier(n_estimators=10, n_jobs=1), False),
    (RandomForestClassifier(10, random_state=0), False),
    (HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]), False),
])
def test_each_model_gets_its_walk(tmp_path: Path, model: Any, row_major: bool) -> None:
    classes = 2 if row_major or not isinstance(model, xgboost.XGBClassifier) else 3
    x, y = _x_y(classes)
    if isinstance(model, HistGradientBoostingClassifier) and not row_major:
        x[:, 0] = np.random.default_rng(1).integers(0, 5, len(x))
    trees = _ensemble(tmp_path, model.fit(x, y), x)
    assert (trees._depth is not None) is row_major
    assert np.array_equal(trees.predict(x), model.predict(x))


def test_a_table_larger_than_the_cache_walks_tree_major(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _x_y(2)
    model = xgboost.XGBClassifier(n_estimators=10, n_jobs=1).fit(x, y)
    monkeypatch.setattr(kernel, "ROW_MAJOR_BYTES", 100)
    trees = _ensemble(tmp_path, model, x)
    assert trees._depth is None
    assert np.array_equal(trees.predict(x), model.predict(x))


def test_the_request_path_calls_the_machine_code_and_it_answers_as_the_dispatcher(
        tmp_path: Path) -> None:
    for dispatcher, direct in ((kernel.accumulate, kernel.accumulate_unchecked),
                               (kernel.accumulate_rows, kernel.accumulate_rows_unchecked),
                               (kernel.expit, kernel.expit_unchecked),
                               (kernel.sigmoid32, kernel.sigmoid32_unchecked)):
        assert direct is not dispatcher
    model, x = _models(5, "xgboost")
    trees = _ensemble(tmp_path, model, x)
    for rows in (x[:1], x[:kernel.LANES + 3]):  # both walks
        tree_major, row_major = _both_walks(trees, rows)
        assert np.array_equal(trees.raw(rows), tree_major)
        assert np.array_equal(trees.raw(rows), row_major)
    scores = np.linspace(-30, 30, 7)
    by_dispatcher, direct_out = np.empty(7), np.empty(7)
    kernel.expit(scores, by_dispatcher)
    kernel.expit_unchecked(scores, direct_out)
    assert np.array_equal(by_dispatcher, direct_out)


def test_only_tables_of_exactly_the_signatures_types_go_past_the_dispatcher(
        tmp_path: Path) -> None:
    model, x = _models(5, "xgboost")
    trees = _ensemble(tmp_path, model, x)
    assert trees._accumulate is kernel.accumulate_unchecked  # a slot as inferd writes it
    assert trees._accumulate_rows is kernel.accumulate_rows_unchecked
    table = trees._table
    assert kernel.takes_exactly(kernel.SIGNATURE, table)
    children = table[0]
    # What a slot's header would let through (it pins the file's own dtype), and what
    # the machine code would misread: a narrower int, Fortran order, big-endian.
    for altered in (children.astype(np.int32), np.asfortranarray(children),
                    children.astype(children.dtype.newbyteorder(">"))):
        assert not kernel.takes_exactly(kernel.SIGNATURE, (altered, *table[1:]))
    assert not kernel.takes_exactly(kernel.SIGNATURE, table[:-1])  # one missing


def test_a_dispatcher_without_exactly_one_signature_is_called_as_it_is() -> None:
    import numba

    lazy = numba.njit(lambda v: v + 1)
    assert kernel.unchecked(lazy) is lazy
    lazy(1)
    lazy(1.5)
    assert kernel.unchecked(lazy) is lazy
