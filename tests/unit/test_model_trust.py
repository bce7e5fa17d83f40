"""What inferd refuses to load: callables smuggled into skops files, cyclic trees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from inferd.common.errors import BadRequestError, ModelLoadError
from inferd.common.uris import redact_uri
from inferd.model.artifact import Artifact, check_trees, load_estimator
from inferd.web.codecs.native import decode
from tests.fakes import iris_forest


def test_skops_file_holding_a_builtin_function_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(FunctionTransformer(func=exec), path)
    with pytest.raises(ModelLoadError, match="does not trust: builtins.exec"):
        load_estimator(Artifact(path, "skops"), allow_pickle=False)


def test_skops_forest_loads_with_inferds_own_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    forest = iris_forest(n_estimators=3)
    skops.io.dump(forest, path)
    loaded = load_estimator(Artifact(path, "skops"), allow_pickle=False)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    assert loaded.predict(rows).tolist() == forest.predict(rows).tolist()


def test_a_function_from_the_standard_library_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(FunctionTransformer(func=os.system), path)
    with pytest.raises(ModelLoadError, match="does not trust: posix.system"):
        load_estimator(Artifact(path, "skops"), allow_pickle=False)


@pytest.mark.parametrize("make", [
    lambda: HistGradientBoostingClassifier(max_iter=3),
    lambda: KNeighborsClassifier(n_neighbors=3, algorithm="brute"),
    lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
], ids=["hist-gradient-boosting", "k-neighbours", "scaler-pipeline"])
def test_scikit_learn_families_load_with_the_explicit_list(tmp_path: Path,
                                                           make: Any) -> None:
    features, target = load_iris(return_X_y=True)
    model = make().fit(features, target)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    loaded = load_estimator(Artifact(path, "skops"), allow_pickle=False)
    assert loaded.predict(features[:20]).tolist() == model.predict(features[:20]).tolist()


def test_a_tree_whose_child_points_back_is_refused() -> None:
    forest = iris_forest(n_estimators=1)
    tree = forest.estimators_[0].tree_
    internal = np.flatnonzero(tree.children_left != -1)
    assert len(internal) > 1
    tree.children_left[internal[1]] = internal[0]  # a cycle: predict would never return
    with pytest.raises(ModelLoadError, match="point outside the tree"):
        check_trees(forest)


def test_deeply_nested_features_are_a_clear_400_not_a_crash() -> None:
    body = b'{"features": [[' + b"[" * 300 + b"1" + b"]" * 300 + b"]]}"
    with pytest.raises(BadRequestError) as caught:
        decode(body, max_rows=10)
    assert "expected a number" in str(caught.value) or "malformed JSON" in str(caught.value)


@pytest.mark.parametrize(("uri", "shown"), [
    ("http://alice:s3cr3t@mlflow:5000/x", "http://***@mlflow:5000/x"),
    ("https://mlflow:5000", "https://mlflow:5000"),
    ("sqlite:////var/lib/inferd/mlflow.db", "sqlite:////var/lib/inferd/mlflow.db"),
])
def test_tracking_uri_credentials_never_shown(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
