"""Gradient boosting compiled: equal to scikit-learn's predict and predict_proba to the
bit over random data, depths, tree counts, class counts, NaNs and categories; and the
kernel's pieces that must match a library function exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)

from inferd.common.errors import ModelLoadError
from inferd.model.artifact import load_model_dir
from inferd.model.compiled import kernel
from inferd.model.compiled.compile import compile_into, load_compiled
from inferd.model.compiled.format import CompiledFormatError
from inferd.reloading.validate import validate_staged

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _data(seed: int, rows: int, features: int, classes: int, nan: float = 0.0,
          categorical: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)) * rng.uniform(0.1, 100, size=features)
    for column in range(categorical):  # small integer codes, some spread out
        x[:, column] = rng.integers(0, 6, size=rows) * (1 + column * 7)
    y = (rng.integers(0, classes, size=rows) + (x[:, -1] > 0)) % classes
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x, y


def _check(tmp_path: Path, model: Any, x: np.ndarray, query: np.ndarray) -> None:
    slot = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses one tmp_path
    facts = compile_into(slot, model, x[:3])
    assert facts["form"] == "compiled", facts
    compiled = load_compiled(slot)
    assert np.array_equal(compiled.predict(query), model.predict(query))
    if hasattr(model, "predict_proba"):
        got, expected = compiled.predict_proba(query), model.predict_proba(query)
        assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))


@SETTINGS
@given(seed=st.integers(0, 10_000), features=st.integers(1, 8), classes=st.integers(1, 4),
       trees=st.integers(1, 15), depth=st.integers(1, 6),
       loss=st.sampled_from(["log_loss", "exponential"]), rate=st.floats(0.01, 1.0),
       init=st.sampled_from([None, "zero"]),
       regression=st.sampled_from(["squared_error", "absolute_error", "huber", "quantile"]))
def test_gradient_boosting_equals_sklearn(tmp_path: Path, seed: int, features: int,
                                          classes: int, trees: int, depth: int, loss: str,
                                          rate: float, init: str | None,
                                          regression: str) -> None:
    x, y = _data(seed, 150, features, max(classes, 2))
    if classes == 1:  # a regressor
        model: Any = GradientBoostingRegressor(n_estimators=trees, max_depth=depth,
                                               learning_rate=rate, random_state=seed,
                                               init=init, loss=regression)
        y = y + x[:, 0]
    else:
        model = GradientBoostingClassifier(
            n_estimators=trees, max_depth=depth, learning_rate=rate, random_state=seed,
            loss=loss if classes == 2 else "log_loss", init=init)
    model.fit(x, y)
    _check(tmp_path, model, x, np.vstack([x, _data(seed + 1, 100, features, 2)[0]]))


@SETTINGS
@given(seed=st.integers(0, 10_000), features=st.integers(2, 6), classes=st.integers(1, 4),
       trees=st.integers(1, 20), leaves=st.integers(2, 20), nan=st.sampled_from([0.0, 0.2]),
       categorical=st.integers(0, 2), loss=st.sampled_from(["squared_error", "poisson"]))
def test_hist_gradient_boosting_equals_sklearn(tmp_path: Path, seed: int, features: int,
                                               classes: int, trees: int, leaves: int,
                                               nan: float, categorical: int, loss: str) -> None:
    x, y = _data(seed, 200, features, max(classes, 2), nan, categorical)
    params: dict[str, Any] = {"max_iter": trees, "max_leaf_nodes": leaves,
                              "categorical_features": list(range(categorical)) or None,
                              "random_state": seed, "early_stopping": False}
    if classes == 1:
        model: Any = HistGradientBoostingRegressor(loss=loss, **params)
        y = np.abs(y + np.nan_to_num(x[:, -1]) / 10)
    else:
        model = HistGradientBoostingClassifier(**params)
    model.fit(x, y)
    query = np.vstack([x, _data(seed + 1, 100, features, 2, nan, categorical)[0]])
    query[:5, :categorical] = [-1.0] * categorical or np.empty((5, 0))  # negative: missing
    query[5:10, :categorical] = 1000.0  # unknown categories
    _check(tmp_path, model, x, query)


def test_expit_is_scipys_to_the_bit() -> None:
    x = np.concatenate([np.random.default_rng(0).normal(size=20_000) * s
                        for s in (0.01, 1.0, 30.0, 800.0)])
    out = np.empty_like(x)
    kernel.expit(x, out)
    assert np.array_equal(out, expit(x))


def test_hostile_categorical_bitset_is_refused(tmp_path: Path) -> None:
    x, y = _data(0, 300, 3, 2, categorical=1)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(x, y)
    assert compile_into(tmp_path, model, x[:2])["form"] == "compiled"
    path = tmp_path / "compiled" / "arrays" / "tree_cat_node.npy"
    cat_node = np.array(np.load(path))
    cat_node[cat_node >= 0] = 10**6
    np.save(path, cat_node)
    with pytest.raises(CompiledFormatError, match="bitset"):
        load_compiled(tmp_path)


def test_categorical_hgb_in_skops_compiles_without_trusting_partial(tmp_path: Path) -> None:
    """scikit-learn keeps functools.partial(check_array) in such a model: the reload
    trusts it only to compile; a worker's loader still refuses the file."""
    x, y = _data(1, 300, 3, 2, categorical=1)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(x, y)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    skops.io.dump(model, model_dir / "model.skops")
    with pytest.raises(ModelLoadError, match="functools.partial"):
        load_model_dir(model_dir, allow_pickle=False)
    facts = validate_staged(model_dir, allow_pickle=False, compile_into=tmp_path)
    assert facts["form"] == "compiled"
    assert np.array_equal(load_compiled(tmp_path).predict_proba(x), model.predict_proba(x))


def test_an_uncompilable_model_needing_compile_only_trust_fails_the_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If such a model does not compile (here: its compiled form is made to disagree),
    the workers could only serve it by trusting functools.partial: the reload fails,
    naming the types and why it did not compile."""
    from inferd.model.compiled import compile as compile_module

    x, y = _data(1, 300, 3, 2, categorical=1)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(x, y)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    skops.io.dump(model, model_dir / "model.skops")
    monkeypatch.setattr(compile_module, "disagreement", lambda *args: "forced to differ")
    with pytest.raises(ModelLoadError, match="functools.partial.*trusted only to compile"
                                             ".*forced to differ"):
        validate_staged(model_dir, allow_pickle=False, compile_into=tmp_path)
    assert not (tmp_path / "compiled").exists()


def test_a_hostile_hist_gradient_boosting_file_is_refused_before_scikit_learn_reads_it(
        tmp_path: Path) -> None:
    """scikit-learn's HGB predictor indexes its nodes unchecked: a node pointing past
    the array is refused at load, before any prediction (smoke test included)."""
    x, y = _data(3, 200, 3, 2)
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, y)
    nodes = model._predictors[0][0].nodes
    nodes["left"][0] = 10**6
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    skops.io.dump(model, model_dir / "model.skops")
    with pytest.raises(ModelLoadError, match="point outside the tree"):
        load_model_dir(model_dir, allow_pickle=False)


def test_releasing_llvm_pages_leaves_the_kernel_working(tmp_path: Path) -> None:
    """The master drops LLVM's code pages before it forks; predictions go on, equal."""
    x, y = _data(4, 200, 4, 3)
    model = HistGradientBoostingClassifier(max_iter=10).fit(x, y)
    assert compile_into(tmp_path, model, x[:2])["form"] == "compiled"
    kernel.release_compiler_pages()
    assert not any(rss for _, _, rss in kernel._clean_mappings("libllvmlite"))
    compiled = load_compiled(tmp_path)
    assert np.array_equal(compiled.predict_proba(x), model.predict_proba(x))
