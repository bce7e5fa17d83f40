"""XGBoost and LightGBM compiled: equal to the libraries' own predict and predict_proba
to the bit over random data, depths, tree counts, class counts, NaNs, zeros and
categories; the native boosters of their MLflow flavors; and what has no compiled form."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferd.model.compiled import kernel
from inferd.model.compiled.compile import compile_into, load_compiled
from inferd.model.compiled.format import CompiledFormatError
from inferd.model.flavors import LightGBMBooster, XGBoostBooster
from tests.unit.test_compiled_boosting import _data as boosting_data

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
warnings.filterwarnings("ignore", module="lightgbm")


def _data(seed: int, rows: int, features: int, classes: int, nan: float = 0.0,
          categorical: int = 0, zeros: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's boosting tests' data, plus zeros (LightGBM's missing type Zero)."""
    x, y = boosting_data(seed, rows, features, classes, categorical=categorical)
    rng = np.random.default_rng(seed + 7)
    if zeros:
        x[rng.random(x.shape) < zeros] = 0.0
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x, y


def _queries(seed: int, x: np.ndarray, categorical: int = 0) -> np.ndarray:
    """The training rows, fresh rows with NaN, zeros, tiny values, and for categorical
    columns unseen, negative and fractional categories."""
    rng = np.random.default_rng(seed + 1)
    fresh = x[rng.integers(0, len(x), 200)] + rng.normal(size=(200, x.shape[1]))
    fresh[rng.random(fresh.shape) < 0.15] = np.nan
    fresh[rng.random(fresh.shape) < 0.1] = 0.0
    fresh[rng.random(fresh.shape) < 0.05] = 1e-36
    for column in range(categorical):
        fresh[:, column] = rng.choice([0, 1, 5, 7, 14, 40, 300, -1, -0.5, 2.7, np.nan], 200)
    return np.vstack([x, fresh])


def _check(tmp_path: Path, model: Any, x: np.ndarray, query: np.ndarray) -> None:
    slot = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses one tmp_path
    facts = compile_into(slot, model, x[:3])
    assert facts["form"] == "compiled", facts
    compiled = load_compiled(slot)
    expected = np.asarray(model.predict(query))
    got = compiled.predict(query)
    assert got.shape == expected.shape and np.array_equal(got, expected)
    if hasattr(model, "predict_proba"):
        expected = np.asarray(model.predict_proba(query), dtype=np.float64)
        got = compiled.predict_proba(query)
        assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))


@SETTINGS
@given(seed=st.integers(0, 10_000), features=st.integers(1, 8), classes=st.integers(1, 4),
       trees=st.integers(1, 15), depth=st.integers(1, 6), nan=st.sampled_from([0.0, 0.2]),
       softmax=st.booleans(), lossguide=st.booleans(), early=st.booleans())
def test_xgboost_equals_the_library(tmp_path: Path, seed: int, features: int, classes: int,
                                    trees: int, depth: int, nan: float, softmax: bool,
                                    lossguide: bool, early: bool) -> None:
    x, y = _data(seed, 200, features, max(classes, 2), nan=nan)
    options: dict[str, Any] = {"n_estimators": trees, "max_depth": depth,
                               "random_state": seed, "n_jobs": 1,
                               "grow_policy": "lossguide" if lossguide else "depthwise"}
    if early and trees > 2:  # best_iteration: the wrappers predict with fewer trees
        options["early_stopping_rounds"] = 1
    fit = {"eval_set": [(x, y)], "verbose": False} if "early_stopping_rounds" in options else {}
    if classes == 1:
        model: Any = xgboost.XGBRegressor(**options).fit(x, y + np.nan_to_num(x[:, 0]), **fit)
    else:
        if classes > 2 and softmax:
            options["objective"] = "multi:softmax"
        model = xgboost.XGBClassifier(**options).fit(x, y, **fit)
    _check(tmp_path, model, x, _queries(seed, x))
    _check(tmp_path, XGBoostBooster(model.get_booster()), x, _queries(seed, x))


@SETTINGS
@given(seed=st.integers(0, 10_000), features=st.integers(2, 8), classes=st.integers(1, 4),
       trees=st.integers(1, 15), leaves=st.integers(2, 31), nan=st.sampled_from([0.0, 0.2]),
       categorical=st.integers(0, 2), missing=st.sampled_from(["nan", "zero", "none"]))
def test_lightgbm_equals_the_library(tmp_path: Path, seed: int, features: int, classes: int,
                                     trees: int, leaves: int, nan: float, categorical: int,
                                     missing: str) -> None:
    categorical = min(categorical, features - 1)
    x, y = _data(seed, 300, features, max(classes, 2), nan=nan, categorical=categorical,
                 zeros=0.2 if missing == "zero" else 0.0)
    options = {"n_estimators": trees, "num_leaves": leaves, "random_state": seed,
               "n_jobs": 1, "verbose": -1, "min_child_samples": 3, "min_data_per_group": 3,
               "cat_smooth": 1.0, "zero_as_missing": missing == "zero",
               "use_missing": missing != "none"}
    fit = {"categorical_feature": list(range(categorical))}
    if classes == 1:
        model: Any = lightgbm.LGBMRegressor(**options).fit(x, y + np.nan_to_num(x[:, -1]), **fit)
    else:
        model = lightgbm.LGBMClassifier(**options).fit(x, y, **fit)
    query = _queries(seed, x, categorical)
    _check(tmp_path, model, x, query)
    _check(tmp_path, LightGBMBooster(model.booster_), x, query)


@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob"])
def test_xgboost_transforms_match_far_out_margins(tmp_path: Path, objective: str) -> None:
    """Margins far past exp's range (sigmoid32 clamps at 88.7 as XGBoost does)."""
    x, y = _data(3, 200, 3, 3 if objective.startswith("multi") else 2)
    model = xgboost.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=1.0,
                                  reg_lambda=0.0, min_child_weight=0.0).fit(x * 1e3, y)
    _check(tmp_path, model, x, np.vstack([x, x * 1e3, -x * 1e3]))


def test_dart_custom_missing_and_poisson_are_served_by_the_library(tmp_path: Path) -> None:
    x, y = _data(1, 100, 3, 2)
    dart = xgboost.XGBClassifier(n_estimators=3, booster="dart").fit(x, y)
    facts = compile_into(tmp_path, dart, x[:2])
    assert facts["form"] == "fallback" and "dart" in facts["fallback_reason"]
    zero_missing = xgboost.XGBClassifier(n_estimators=3, missing=0.0).fit(x, y)
    facts = compile_into(tmp_path, zero_missing, x[:2])
    assert facts["form"] == "fallback" and "missing=0.0" in facts["fallback_reason"]
    poisson = lightgbm.LGBMRegressor(n_estimators=3, objective="poisson", verbose=-1)
    facts = compile_into(tmp_path, poisson.fit(x, y + 1.0), x[:2])
    assert facts["form"] == "fallback" and "poisson" in facts["fallback_reason"]


def _compiled_lightgbm(tmp_path: Path) -> Path:
    x, _ = _data(2, 200, 4, 2, categorical=1, zeros=0.3)
    y = (x[:, 0] % 3 == 0).astype(int)  # the categorical column decides
    model = lightgbm.LGBMClassifier(n_estimators=5, zero_as_missing=True, verbose=-1,
                                    min_child_samples=3, min_data_per_group=3)
    assert compile_into(tmp_path, model.fit(x, y, categorical_feature=[0]), x[:2])["form"] \
        == "compiled"
    return tmp_path / "compiled" / "arrays"


@pytest.mark.parametrize("name, damage", [
    ("tree_zero_missing", lambda a: a[:-1]),
    ("tree_truncate_columns", lambda a: a + 99),
])
def test_damaged_library_arrays_are_refused(tmp_path: Path, name: str, damage: Any) -> None:
    arrays = _compiled_lightgbm(tmp_path)
    path = arrays / f"{name}.npy"
    assert len(np.load(path))
    np.save(path, damage(np.load(path)), allow_pickle=False)
    with pytest.raises(CompiledFormatError):
        load_compiled(tmp_path)


def test_float32_sums_and_transforms_are_xgboosts() -> None:
    """The kernel's float32 pieces against XGBoost's own margins and probabilities."""
    x, y = _data(5, 400, 4, 3)
    booster = xgboost.XGBClassifier(n_estimators=20, max_depth=4).fit(x, y).get_booster()
    margins = booster.predict(xgboost.DMatrix(x), output_margin=True).astype(np.float64)
    out = np.empty_like(margins)
    kernel.softmax32(margins, out)
    assert np.array_equal(out, booster.predict(xgboost.DMatrix(x)).astype(np.float64))


def test_lightgbm_binary_label_is_the_argmax_of_its_probabilities() -> None:
    """The label is computed without the probability rows; it must still be their
    argmax, the first class on a tie (a raw score of 0 is P(1) = 0.5)."""
    from inferd.model.compiled import library_outputs

    raw = np.array([0.0, -0.0, 1e-300, -1e-300, 2.5e-16, 40.0, -40.0, 800.0, -800.0,
                    0.3, -0.3])[:, np.newaxis]
    classes = np.array(["no", "yes"])
    expected = classes.take(np.argmax(library_outputs.predict_proba("lgb_binary", raw),
                                      axis=1), axis=0)
    labels = library_outputs.predict("lgb_binary", raw, classes)
    assert labels.tolist() == expected.tolist()
    assert labels[0] == "no"
