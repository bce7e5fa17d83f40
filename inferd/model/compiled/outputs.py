"""From a tree model's raw scores to `predict` and `predict_proba`, as the library does.

Each `output` names one of scikit-learn's own last steps, repeated with the same numpy
calls on arrays of the same layout, so the answers are equal to the bit:

    proba_mean    forest classifier: probabilities = sum of the trees' rows / trees
                  (`ForestClassifier.predict_proba`), label = argmax
    mean          forest regressor: sum / trees
    class_rows    one tree classifier: label = argmax of the rows, probabilities = the
                  rows (`DecisionTreeClassifier.predict_proba`)
    value         one tree regressor, GradientBoostingRegressor, HistGradientBoosting-
                  Regressor with an identity link: the raw score
    exp           HistGradientBoostingRegressor with a log link (poisson, gamma)
    logistic_ge   GradientBoostingClassifier, two classes, log loss: label = raw >= 0,
                  P(1) = expit(raw)
    logistic2_ge  the same with the exponential loss: P(1) = expit(2 raw)
    logistic_gt   HistGradientBoostingClassifier, two classes: label = raw > 0
    softmax       multiclass boosting: label = argmax, probabilities = softmax
                  (`sklearn.utils.extmath.softmax`) on a C-ordered copy
    softmax_f     the same on a Fortran-ordered copy (HistGradientBoosting* keeps its
                  raw scores in Fortran order, and numpy's row sums follow the layout)

XGBoost's and LightGBM's own last steps are in `inferd.model.compiled.library_outputs`.
"""

from __future__ import annotations

import numpy as np

from inferd.model.compiled import kernel, library_outputs
from inferd.model.compiled.format import CompiledFormatError

FORMAT1_OUTPUTS = {("classifier", "mean"): "proba_mean", ("regressor", "mean"): "mean",
                   ("classifier", "single"): "class_rows", ("regressor", "single"): "value"}
_CLASS_ROWS = ("proba_mean", "class_rows")
_BINARY = ("logistic_ge", "logistic2_ge", "logistic_gt")
_SOFTMAX = ("softmax", "softmax_f")
_REGRESSION = ("mean", "value", "exp")
NAMES = _CLASS_ROWS + _BINARY + _SOFTMAX + _REGRESSION + library_outputs.NAMES


def check(output: str, task: str, columns: int, n_classes: int) -> None:
    """Refuse an output that does not fit the raw scores' shape or the task."""
    ok = library_outputs.check(output, task, columns, n_classes) if \
        output in library_outputs.NAMES else {
        "classifier": (output in _CLASS_ROWS and columns == n_classes)
        or (output in _BINARY and columns == 1 and n_classes == 2)
        or (output in _SOFTMAX and columns == n_classes > 2),
        "regressor": output in _REGRESSION and columns == 1,
    }[task]
    if not ok:
        raise CompiledFormatError(f"output {output!r} does not fit a {task} with {columns} "
                                  f"raw columns and {n_classes} classes")


def predict(output: str, raw: np.ndarray, n_trees: int, classes: np.ndarray | None) -> np.ndarray:
    if output in library_outputs.NAMES:
        return library_outputs.predict(output, raw, classes)
    if output == "mean":
        return raw[:, 0] / n_trees
    if output == "value":
        return raw[:, 0].copy()
    if output == "exp":
        return np.exp(raw[:, 0])
    assert classes is not None  # check() made sure of it when the slot was opened
    if output == "proba_mean":
        return classes.take(np.argmax(raw / n_trees, axis=1), axis=0)
    if output in _BINARY:
        positive = raw[:, 0] > 0 if output == "logistic_gt" else raw[:, 0] >= 0
        return classes[positive.astype(int)]
    return classes.take(np.argmax(raw, axis=1), axis=0)  # class_rows, softmax


def predict_proba(output: str, raw: np.ndarray, n_trees: int) -> np.ndarray:
    if output in library_outputs.NAMES:
        return library_outputs.predict_proba(output, raw)
    if output == "proba_mean":
        return raw / n_trees
    if output == "class_rows":
        return raw  # DecisionTreeClassifier.predict_proba: the value rows as stored
    if output in _BINARY:
        score = np.ascontiguousarray(raw[:, 0])
        if output == "logistic2_ge":
            score = 2 * score
        proba = np.empty((len(raw), 2), dtype=np.float64)
        positive = np.empty(len(raw), dtype=np.float64)
        kernel.expit(score, positive)
        proba[:, 1] = positive
        proba[:, 0] = 1 - proba[:, 1]
        return proba
    if output in _SOFTMAX:
        x = np.array(raw, order="F" if output == "softmax_f" else "C")
        x -= np.max(x, axis=1).reshape((-1, 1))
        np.exp(x, out=x)
        x /= np.sum(x, axis=1).reshape((-1, 1))
        return x
    raise ValueError(f"a model with output {output!r} has no predict_proba")
