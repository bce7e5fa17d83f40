"""Compiled slots: equal to scikit-learn over random models and data, and refused when
an array on disk is corrupt or hostile."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from inferd.common.errors import BadRequestError
from inferd.model.compiled.compile import compile_into, load_compiled
from inferd.model.compiled.format import CompiledFormatError
from inferd.model.loaded import LoadedModel

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

TREE_MODELS = {
    "rf_c": RandomForestClassifier, "et_c": ExtraTreesClassifier,
    "dt_c": DecisionTreeClassifier, "rf_r": RandomForestRegressor,
    "et_r": ExtraTreesRegressor, "dt_r": DecisionTreeRegressor,
}
SCALERS = [StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler]


def _data(seed: int, rows: int, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)) * rng.uniform(0.1, 100, size=features)
    y = rng.integers(0, classes, size=rows)
    return x, y


def _compile(tmp_path: Path, model: Any, x: np.ndarray) -> Any:
    slot = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses one tmp_path
    facts = compile_into(slot, model, x[:3])
    assert facts["form"] == "compiled", facts
    return load_compiled(slot)


@SETTINGS
@given(kind=st.sampled_from(sorted(TREE_MODELS)), seed=st.integers(0, 10_000),
       features=st.integers(1, 12), classes=st.integers(2, 6),
       trees=st.integers(1, 12), depth=st.one_of(st.none(), st.integers(1, 12)),
       scaler=st.one_of(st.none(), st.sampled_from(SCALERS)))
def test_trees_equal_sklearn(tmp_path: Path, kind: str, seed: int, features: int,
                             classes: int, trees: int, depth: int | None,
                             scaler: Any) -> None:
    x, y = _data(seed, 120, features, classes)
    cls = TREE_MODELS[kind]
    params: dict[str, Any] = {"max_depth": depth, "random_state": seed}
    if not kind.startswith("dt"):
        params["n_estimators"] = trees
    if kind.endswith("_r"):
        y = y * 1.5 + x[:, 0]
    model = cls(**params)
    if scaler is not None:
        model = make_pipeline(scaler(), model)
    model.fit(x, y)
    compiled = _compile(tmp_path, model, x)
    query = np.vstack([x, _data(seed + 1, 200, features, classes)[0]])
    assert np.array_equal(compiled.predict(query), model.predict(query))
    final = model[-1] if scaler is not None else model
    if kind.endswith("_c") and kind != "dt_c":
        # Probabilities equal to the bit: same per-tree rows, same summation order.
        assert np.array_equal(compiled.predict_proba(query), final.predict_proba(
            model[:-1].transform(query) if scaler is not None else query))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(TREE_MODELS)), seed=st.integers(0, 10_000),
       features=st.integers(1, 6), classes=st.integers(2, 4), trees=st.integers(1, 8))
def test_trees_fitted_with_missing_values_send_nan_their_way(
        tmp_path: Path, kind: str, seed: int, features: int, classes: int,
        trees: int) -> None:
    """Trees learn where NaN goes (missing_go_to_left); the kernel follows each node."""
    x, y = _data(seed, 150, features, classes)
    x[np.random.default_rng(seed).random(x.shape) < 0.25] = np.nan
    params: dict[str, Any] = {"random_state": seed, "max_depth": 8}
    if not kind.startswith("dt"):
        params["n_estimators"] = trees
    if kind.endswith("_r"):
        y = y * 1.5 + np.nan_to_num(x[:, 0])
    model = TREE_MODELS[kind](**params).fit(x, y)
    compiled = _compile(tmp_path, model, x)
    query = np.vstack([x, np.full((1, features), np.nan)])
    assert np.array_equal(compiled.predict(query), model.predict(query))
    if kind.endswith("_c"):
        assert np.array_equal(compiled.predict_proba(query), model.predict_proba(query))


@SETTINGS
@given(kind=st.sampled_from(["linreg", "ridge", "lasso", "enet", "logreg", "sgd", "sgd_log",
                             "svc"]),
       seed=st.integers(0, 10_000), features=st.integers(1, 10), classes=st.integers(2, 5),
       scaler=st.one_of(st.none(), st.sampled_from(SCALERS)))
def test_linear_equal_sklearn(tmp_path: Path, kind: str, seed: int, features: int,
                              classes: int, scaler: Any) -> None:
    x, y = _data(seed, 150, features, classes)
    model: Any = {"linreg": LinearRegression(), "ridge": Ridge(alpha=0.5),
                  "lasso": Lasso(alpha=0.01), "enet": ElasticNet(alpha=0.01),
                  "logreg": LogisticRegression(max_iter=300),
                  "sgd": SGDClassifier(random_state=seed),
                  "sgd_log": SGDClassifier(loss="log_loss", random_state=seed),
                  "svc": LinearSVC(random_state=seed)}[kind]
    if kind not in ("logreg", "sgd", "sgd_log", "svc"):
        y = x @ np.arange(1, features + 1) + y
    if scaler is not None:
        model = make_pipeline(scaler(), model)
    model.fit(x, y)
    compiled = _compile(tmp_path, model, x)
    query = np.vstack([x, _data(seed + 1, 100, features, classes)[0]])
    assert np.array_equal(compiled.predict(query), model.predict(query))
    assert compiled.has_proba == hasattr(model, "predict_proba")
    if compiled.has_proba:
        # Probabilities equal to the bit, through the scalers too.
        expected = model.predict_proba(query)
        assert np.array_equal(compiled.predict_proba(query).view(np.uint64),
                              expected.view(np.uint64))


@pytest.mark.parametrize("model", [
    KNeighborsClassifier(3),
    # A fitted init estimator predicts per row; only constant inits compile.
    GradientBoostingClassifier(n_estimators=3, init=LogisticRegression()),
])
def test_unsupported_model_falls_back(tmp_path: Path, model: Any) -> None:
    x, y = _data(0, 60, 3, 2)
    facts = compile_into(tmp_path, model.fit(x, y), x[:1])
    assert facts["form"] == "fallback"
    assert type(model).__name__ in facts["fallback_reason"]
    assert not (tmp_path / "compiled").exists()


def test_clipping_scaler_falls_back(tmp_path: Path) -> None:
    x, y = _data(0, 60, 3, 2)
    model = make_pipeline(MinMaxScaler(clip=True), LogisticRegression()).fit(x, y)
    assert compile_into(tmp_path, model, x[:1])["form"] == "fallback"


def test_float32_overflow_is_a_value_error(tmp_path: Path) -> None:
    x, y = _data(0, 60, 3, 2)
    compiled = _compile(tmp_path, RandomForestClassifier(3, random_state=0).fit(x, y), x)
    with pytest.raises(ValueError, match="too large"):
        compiled.predict(np.array([[1e300, 0.0, 0.0]]))


# -- hostile files ----------------------------------------------------------------------------


@pytest.fixture()
def forest_slot(tmp_path: Path) -> Path:
    x, y = _data(1, 200, 4, 3)
    model = RandomForestClassifier(4, max_depth=5, random_state=0).fit(x, y)
    assert compile_into(tmp_path, model, x[:2])["form"] == "compiled"
    load_compiled(tmp_path)  # loads cleanly before the damage
    return tmp_path


def _rewrite(slot: Path, name: str, change: Any) -> None:
    path = slot / "compiled" / "arrays" / f"{name}.npy"
    array = np.array(np.load(path))
    change(array)
    np.save(path, array)


def _first_inner(slot: Path) -> int:
    children = np.load(slot / "compiled" / "arrays" / "tree_children.npy")
    return int(np.flatnonzero(children[:, 0] != np.arange(len(children)))[0])


@pytest.mark.parametrize("damage", [
    "child_past_end", "child_negative", "child_backwards", "child_in_next_tree",
    "feature_out_of_range", "feature_negative", "root_out_of_range", "class_count",
    "leaf_flag_lies",
])
def test_hostile_indices_are_refused(forest_slot: Path, damage: str) -> None:
    inner = _first_inner(forest_slot)

    def set_child(value: int) -> Any:
        return lambda a: a.__setitem__((inner, 0), value)

    changes: dict[str, tuple[str, Any]] = {
        "child_past_end": ("tree_children", set_child(10**9)),
        "child_negative": ("tree_children", set_child(-5)),
        "child_backwards": ("tree_children", set_child(inner)),  # a cycle on itself
        "child_in_next_tree": ("tree_children", lambda a: a.__setitem__((inner, 1), len(a) - 1)),
        "feature_out_of_range": ("tree_feature", lambda a: a.__setitem__(inner, 4)),
        "feature_negative": ("tree_feature", lambda a: a.__setitem__(inner, -1)),
        "root_out_of_range": ("tree_roots", lambda a: a.__setitem__(-1, 10**9)),
        "class_count": ("tree_classes", None),
        "leaf_flag_lies": ("tree_leaf", lambda a: a.__setitem__(inner, True)),
    }
    name, change = changes[damage]
    if damage == "class_count":
        np.save(forest_slot / "compiled" / "arrays" / "tree_classes.npy", np.arange(2))
    else:
        _rewrite(forest_slot, name, change)
    with pytest.raises(CompiledFormatError):
        load_compiled(forest_slot)


def test_truncated_or_retyped_arrays_are_refused(forest_slot: Path) -> None:
    path = forest_slot / "compiled" / "arrays" / "tree_threshold.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CompiledFormatError):
        load_compiled(forest_slot)
    np.save(path, np.zeros(3, dtype=np.float32))
    with pytest.raises(CompiledFormatError, match="header says"):
        load_compiled(forest_slot)


def test_pickled_object_array_is_refused(forest_slot: Path) -> None:
    path = forest_slot / "compiled" / "arrays" / "tree_classes.npy"
    np.save(path, np.array(["a", 1, None], dtype=object), allow_pickle=True)
    with pytest.raises(CompiledFormatError):
        load_compiled(forest_slot)


def test_an_impostor_with_a_supported_name_falls_back(tmp_path: Path) -> None:
    impostor = type("RandomForestClassifier", (), {"n_features_in_": 4,
                                                   "predict": lambda self, rows: rows[:, 0]})()
    facts = compile_into(tmp_path, impostor, np.zeros((1, 4)))
    assert facts["form"] == "fallback"
    assert "RandomForestClassifier" in facts["fallback_reason"]
    assert not (tmp_path / "compiled").exists()


def test_a_compiled_form_that_disagrees_is_not_kept(tmp_path: Path) -> None:
    x, y = _data(0, 80, 3, 2)

    class Contrary(LogisticRegression):  # compiles as LogisticRegression, predicts otherwise
        def predict(self, rows: Any) -> Any:
            return 1 - super().predict(rows)

    Contrary.__name__ = "LogisticRegression"
    facts = compile_into(tmp_path, Contrary().fit(x, y), x[:2])
    assert facts["form"] == "fallback"
    assert "differ" in facts["fallback_reason"]
    assert not (tmp_path / "compiled").exists()


def test_batches_over_several_kernel_blocks(tmp_path: Path) -> None:
    from inferd.model.compiled import kernel

    x, y = _data(3, 300, 5, 3)
    model = RandomForestClassifier(7, random_state=0).fit(x, y)
    compiled = _compile(tmp_path, model, x)
    rows = _data(4, 2 * kernel.BLOCK + 5, 5, 3)[0]
    assert np.array_equal(compiled.predict_proba(rows), model.predict_proba(rows))
    assert np.array_equal(compiled.predict(rows), model.predict(rows))


def test_compiled_overflow_is_a_bad_request(tmp_path: Path) -> None:
    x, y = _data(0, 60, 4, 2)
    compiled = _compile(tmp_path, RandomForestClassifier(3, random_state=0).fit(x, y), x)
    model = LoadedModel(1, {"version": "1"}, compiled, 4, form="compiled")
    with pytest.raises(BadRequestError, match="too large"):
        model.predict(np.array([[1e300, 0.0, 0.0, 0.0]]))


def test_a_format_1_slot_still_loads(tmp_path: Path) -> None:
    """A slot compiled by the previous version: format 1 header and tree arrays only."""
    x, y = _data(5, 200, 4, 3)
    model = RandomForestClassifier(5, random_state=0).fit(x, y)
    _compile(tmp_path, model, x)
    slot = next(p for p in tmp_path.iterdir() if p.is_dir())
    header_path = slot / "compiled" / "model.json"
    header = json.loads(header_path.read_text())
    header["format"] = 1
    spec = header["model"]
    for key in ("output", "round32", "allow_nan"):
        del spec[key]
    for name in ("missing_left", "tree_column"):
        (slot / "compiled" / "arrays" / f"{spec['arrays'].pop(name)['array']}.npy").unlink()
    header_path.write_text(json.dumps(header))
    compiled = load_compiled(slot)
    assert np.array_equal(compiled.predict_proba(x), model.predict_proba(x))
    with pytest.raises(ValueError):  # format 1 refused NaN, and still does
        compiled.predict(np.full((1, 4), np.nan))
    header["format"] = 99
    header_path.write_text(json.dumps(header))
    with pytest.raises(CompiledFormatError, match="publish the model again"):
        load_compiled(slot)


def test_an_array_the_kernel_cannot_read_is_refused_at_load(forest_slot: Path) -> None:
    """int32 node features, header and file agreeing: refused when the slot is opened,
    not at the first prediction."""
    path = forest_slot / "compiled" / "arrays" / "tree_feature.npy"
    np.save(path, np.load(path).astype(np.int32))
    header_path = forest_slot / "compiled" / "model.json"
    header = json.loads(header_path.read_text())
    header["model"]["arrays"]["feature"]["dtype"] = "<i4"
    header_path.write_text(json.dumps(header))
    with pytest.raises(CompiledFormatError, match="the kernel reads"):
        load_compiled(forest_slot)
