"""Decision trees, random forests and extra trees into the node table (`trees`).

scikit-learn rounds the inputs to float32 and compares them with the float64
thresholds (`sklearn/tree/_tree.pyx`, `_apply_dense`), sending NaN the way each node
learned (`missing_go_to_left`) where the estimator accepts NaN at all. A forest
classifier's leaf rows are each tree's `predict_proba` rows (the value rows as stored:
class fractions), summed tree by tree from zero and divided by the tree count
(`sklearn/ensemble/_forest.py`, `_accumulate_prediction`); a single tree classifier
takes the argmax of the same rows and answers them as its probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled.format import ArrayWriter, Unsupported
from inferd.model.compiled.outputs import FORMAT1_OUTPUTS
from inferd.model.compiled.trees import Tree, write_table

SINGLE = {"DecisionTreeClassifier", "ExtraTreeClassifier",
          "DecisionTreeRegressor", "ExtraTreeRegressor"}
FORESTS = {"RandomForestClassifier", "ExtraTreesClassifier",
           "RandomForestRegressor", "ExtraTreesRegressor"}
SUPPORTED = SINGLE | FORESTS


def compile_forest(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name not in SUPPORTED:
        raise Unsupported(name)
    if int(getattr(estimator, "n_outputs_", 1)) != 1:
        raise Unsupported(f"{name} with several outputs")
    task = "classifier" if name.endswith("Classifier") else "regressor"
    trees = [estimator] if name in SINGLE else list(estimator.estimators_)
    combine = "single" if name in SINGLE else "mean"
    n_classes = int(estimator.n_classes_) if task == "classifier" else 0
    table = [_tree(t.tree_, task, n_classes) for t in trees]
    spec: dict[str, Any] = {"kind": "trees", "task": task, "combine": combine,
                            "output": FORMAT1_OUTPUTS[(task, combine)], "round32": True,
                            "allow_nan": accepts_nan(estimator)}
    write_table(table, writer, spec)
    if task == "classifier":
        spec["arrays"]["classes"] = writer.add("tree_classes", estimator.classes_)
    return spec


def accepts_nan(estimator: Any) -> bool:
    """Whether the estimator predicts on NaN (trees fitted without monotonic constraints
    do since scikit-learn 1.3) rather than refusing it; asked, not guessed."""
    try:
        estimator.predict(np.full((1, int(estimator.n_features_in_)), np.nan))
    except ValueError:
        return False
    return True


def _tree(t: Any, task: str, n_classes: int) -> Tree:
    return Tree(left=np.asarray(t.children_left), right=np.asarray(t.children_right),
                feature=np.asarray(t.feature), threshold=np.asarray(t.threshold),
                values=_leaf_values(t.value, task, n_classes),
                missing_left=np.asarray(t.missing_go_to_left, dtype=bool))


def _leaf_values(value: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    if task == "regressor":
        return np.ascontiguousarray(value[:, 0, :1], dtype=np.float64)
    # DecisionTreeClassifier.predict_proba returns the value rows as they are (the tree
    # stores class fractions), and a forest sums exactly those.
    return np.ascontiguousarray(value[:, 0, :n_classes], dtype=np.float64)
