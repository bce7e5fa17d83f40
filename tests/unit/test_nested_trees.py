"""Trees are checked wherever a model holds them (inferd.model.walk), and skops types
whose loaded state inferd does not validate (KD and ball trees) are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomTreesEmbedding,
    StackingClassifier,
)
from sklearn.feature_selection import SelectFromModel
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier

from inferd.common.errors import ModelLoadError
from inferd.model.artifact import Artifact, check_trees, load_estimator, load_model_dir
from inferd.model.walk import reachable_estimators

FEATURES, TARGET = load_iris(return_X_y=True)


def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=3, random_state=0)


def loop_tree(estimator: DecisionTreeClassifier) -> None:
    """Point an inner node's child back at the root: predict would never return."""
    nodes = estimator.tree_
    internal = np.flatnonzero(nodes.children_left != -1)
    nodes.children_left[internal[-1]] = 0


def loop_predictor(estimator: HistGradientBoostingClassifier) -> None:
    nodes = estimator._predictors[-1][0].nodes
    internal = np.flatnonzero(~nodes["is_leaf"].astype(bool))
    nodes["right"][internal[-1]] = 0


# (a model holding a tree somewhere else than steps / estimators_, how to reach it)
NESTED: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "best_estimator_": (
        lambda: GridSearchCV(tree(), {"max_depth": [2, 3]}, cv=2),
        lambda m: loop_tree(m.best_estimator_)),
    "final_estimator_": (
        lambda: StackingClassifier([("lr", LogisticRegression(max_iter=300))],
                                   final_estimator=HistGradientBoostingClassifier(max_iter=3),
                                   cv=2),
        lambda m: loop_predictor(m.final_estimator_)),
    "estimator_": (
        lambda: make_pipeline(SelectFromModel(tree()), LogisticRegression(max_iter=300)),
        lambda m: loop_tree(m.steps[0][1].estimator_)),
    "transformers_": (
        lambda: make_pipeline(
            ColumnTransformer([("emb", RandomTreesEmbedding(n_estimators=2, max_depth=3,
                                                            random_state=0), [0, 1, 2, 3])]),
            LogisticRegression(max_iter=300)),
        lambda m: loop_tree(m.steps[0][1].transformers_[0][1].estimators_[0])),
    "calibrated_classifiers_": (
        lambda: CalibratedClassifierCV(tree(), cv=2),
        lambda m: loop_tree(m.calibrated_classifiers_[0].estimator)),
}


@pytest.mark.parametrize("where", sorted(NESTED))
def test_a_looping_tree_is_refused_wherever_it_is_nested(where: str) -> None:
    make, corrupt = NESTED[where]
    model = make().fit(FEATURES, TARGET)
    check_trees(model)  # intact: fine
    corrupt(model)
    with pytest.raises(ModelLoadError, match="point outside the tree"):
        check_trees(model)


def test_a_nested_looping_tree_in_a_skops_file_fails_the_load(tmp_path: Path) -> None:
    make, corrupt = NESTED["estimator_"]
    model = make().fit(FEATURES, TARGET)
    corrupt(model)
    skops.io.dump(model, tmp_path / "model.skops")
    with pytest.raises(ModelLoadError, match="point outside the tree"):
        load_model_dir(tmp_path, allow_pickle=False)


def test_each_object_is_visited_once_even_in_a_cycle() -> None:
    a = LogisticRegression()
    b = LogisticRegression()
    a.partner_ = [b]
    b.partner_ = {"back": a}
    assert reachable_estimators(a) == [a, b]


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_neighbour_indexes_are_refused_in_skops(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(KNeighborsClassifier(algorithm=algorithm).fit(FEATURES, TARGET), path)
    refused = r"does not trust: .*sklearn\.neighbors\._(kd|ball)_tree"
    with pytest.raises(ModelLoadError, match=refused):
        load_estimator(Artifact(path, "skops"), allow_pickle=False)


def test_brute_force_neighbours_hold_no_index_and_load(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    model = KNeighborsClassifier(algorithm="brute").fit(FEATURES, TARGET)
    skops.io.dump(model, path)
    loaded = load_estimator(Artifact(path, "skops"), allow_pickle=False)
    assert loaded.predict(FEATURES[:20]).tolist() == model.predict(FEATURES[:20]).tolist()
