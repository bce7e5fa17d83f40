"""scikit-learn's gradient boosting into the node table (`trees`): one single-value
tree per (iteration, class), each adding to its class's raw-score column.

GradientBoosting*: the raw scores start at the init estimator's raw prediction
(`_raw_predict_init`; constant for the default init, a DummyClassifier/-Regressor, or
"zero"; any other init has no compiled form) and each tree adds
`learning_rate * value` (`sklearn/ensemble/_gradient_boosting.pyx`,
`_predict_regression_tree_inplace_fast_dense`; the products are computed here with the
same float64 multiplication). Inputs are rounded to float32 and NaN goes right (that
loop compares NaN <= threshold, which is false).

HistGradientBoosting*: the raw scores start at zero plus `_baseline_prediction` and
each predictor's leaf value (shrinkage already applied) is added
(`BaseHistGradientBoosting._raw_predict`); inputs are compared in float64; NaN and
categories follow `_predict_one_from_raw_data`
(`sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx`) through the node's
`missing_go_to_left` and bitsets; categorical features go through the encoder in
`inferd.model.compiled.categories` first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled.categories import compile_encoder
from inferd.model.compiled.forests import accepts_nan
from inferd.model.compiled.format import ArrayWriter, Unsupported
from inferd.model.compiled.trees import Tree, write_table

GB = {"GradientBoostingClassifier", "GradientBoostingRegressor"}
HGB = {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}
SUPPORTED = GB | HGB
_GB_BINARY = {"HalfBinomialLoss": "logistic_ge", "ExponentialLoss": "logistic2_ge"}
_HGB_REGRESSION_LINKS = {"IdentityLink": "value", "LogLink": "exp"}


def compile_boosting(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name in GB:
        return _gradient_boosting(estimator, writer)
    if name in HGB:
        return _hist_gradient_boosting(estimator, writer)
    raise Unsupported(name)


def _output(estimator: Any, binary: dict[str, str], multiclass: str,
            regression: str | None) -> str:
    loss = type(estimator._loss).__name__
    if not type(estimator).__name__.endswith("Classifier"):
        if regression is None:
            raise Unsupported(f"{type(estimator).__name__} with a {loss} link")
        return regression
    if loss == "HalfMultinomialLoss":
        return multiclass
    if loss not in binary:
        raise Unsupported(f"{type(estimator).__name__} with {loss}")
    return binary[loss]


def _spec(estimator: Any, output: str, round32: bool, allow_nan: bool) -> dict[str, Any]:
    task = "classifier" if type(estimator).__name__.endswith("Classifier") else "regressor"
    return {"kind": "trees", "task": task, "combine": "sum", "output": output,
            "round32": round32, "allow_nan": allow_nan}


def _finish(spec: dict[str, Any], estimator: Any, writer: ArrayWriter,
            baseline: np.ndarray) -> dict[str, Any]:
    spec["arrays"]["baseline"] = writer.add("tree_baseline", baseline)
    if spec["task"] == "classifier":
        spec["arrays"]["classes"] = writer.add("tree_classes", estimator.classes_)
    return spec


def _gradient_boosting(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    init = estimator.init_
    if not (isinstance(init, str) and init == "zero") and type(init).__name__ not in (
            "DummyClassifier", "DummyRegressor"):
        raise Unsupported(f"{type(estimator).__name__} with init={type(init).__name__}")
    n_features = int(estimator.n_features_in_)
    baseline = np.asarray(estimator._raw_predict_init(
        np.zeros((1, n_features), dtype=np.float32)), dtype=np.float64)[0]
    rate = float(estimator.learning_rate)
    stages = np.asarray(estimator.estimators_)
    table = []
    for stage in stages:
        for column, regressor in enumerate(stage):
            t = regressor.tree_
            table.append(Tree(
                left=np.asarray(t.children_left), right=np.asarray(t.children_right),
                feature=np.asarray(t.feature), threshold=np.asarray(t.threshold),
                values=rate * np.asarray(t.value[:, 0, :1], dtype=np.float64),
                missing_left=np.zeros(int(t.node_count), dtype=bool), column=column))
    output = _output(estimator, _GB_BINARY, "softmax", "value")
    spec = _spec(estimator, output, round32=True, allow_nan=accepts_nan(estimator))
    return _finish(write_table(table, writer, spec), estimator, writer, baseline)


def _hist_gradient_boosting(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    regression = None
    if not type(estimator).__name__.endswith("Classifier"):
        regression = _HGB_REGRESSION_LINKS.get(type(estimator._loss.link).__name__)
    output = _output(estimator, {"HalfBinomialLoss": "logistic_gt"}, "softmax_f", regression)
    table = []
    for iteration in estimator._predictors:
        for column, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            table.append(Tree(
                left=np.where(leaf, -1, nodes["left"].astype(np.intp)),
                right=np.where(leaf, -1, nodes["right"].astype(np.intp)),
                feature=nodes["feature_idx"].astype(np.intp),
                threshold=nodes["num_threshold"].astype(np.float64),
                values=nodes["value"].astype(np.float64)[:, np.newaxis],
                missing_left=nodes["missing_go_to_left"].astype(bool),
                column=column,
                cat_node=np.where(nodes["is_categorical"].astype(bool) & ~leaf,
                                  nodes["bitset_idx"].astype(np.intp), -1),
                left_bits=np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32)))
    spec = _spec(estimator, output, round32=False, allow_nan=True)
    encoder = compile_encoder(estimator, writer)
    if encoder is not None:
        spec["categories"] = encoder
    # The library adds its baseline to zeros: 0.0 + b turns a -0.0 into 0.0.
    baseline = np.zeros(1) + np.asarray(estimator._baseline_prediction,
                                        dtype=np.float64).reshape(-1)
    return _finish(write_table(table, writer, spec), estimator, writer, baseline)
