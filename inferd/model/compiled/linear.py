"""Linear and logistic models as a coefficient matrix and an intercept.

    coef       f8 (features,) or (features, k)  exactly the operand scikit-learn
               multiplies with: `coef_` (1-D) or `coef_.T` (kept in Fortran order, so
               the matrix product takes the same BLAS path and gives the same bits)
    intercept  f8 () or (k,)
    classes    (k,) classifiers only

Regressors answer `X @ coef + intercept` (`LinearModel._decision_function`);
classifiers take `classes[scores > 0]` for one score column and `classes[argmax]`
otherwise (`LinearClassifierMixin.predict`).

Probabilities (`"proba"` in the spec), with scikit-learn's own operations in its order,
so they are equal to the bit (verified at slot-write time like predictions):

    logistic  LogisticRegression(CV): one score column -> expit, `[1 - p, p]`
              (`LinearClassifierMixin._predict_proba_lr`); several -> softmax
              (`LogisticRegression.predict_proba`, `sklearn.utils.extmath.softmax`)
    ovr       SGDClassifier(loss="log_loss"): expit of every score, each row divided
              by its sum (all-zero rows uniform), `_predict_proba_lr`
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled import kernel, outputs
from inferd.model.compiled.format import (
    ArrayReader,
    ArrayWriter,
    CompiledFormatError,
    Unsupported,
    spec_choice,
)

REGRESSORS = {"LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet",
              "ElasticNetCV"}
CLASSIFIERS = {"LogisticRegression", "LogisticRegressionCV", "SGDClassifier", "LinearSVC"}
SUPPORTED = REGRESSORS | CLASSIFIERS
PROBAS = ("logistic", "ovr")


def _proba(estimator: Any) -> str | None:
    name = type(estimator).__name__
    if name in ("LogisticRegression", "LogisticRegressionCV"):
        return "logistic"
    if name == "SGDClassifier" and getattr(estimator, "loss", None) == "log_loss":
        return "ovr"
    return None  # no predict_proba (LinearSVC, hinge losses) or not one inferd repeats


def compile_linear(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name not in SUPPORTED:
        raise Unsupported(name)
    coef = np.asarray(estimator.coef_)
    if coef.dtype != np.float64 or coef.ndim not in (1, 2):
        raise Unsupported(f"{name} with coef_ of dtype {coef.dtype}, shape {coef.shape}")
    task = "classifier" if name in CLASSIFIERS else "regressor"
    if task == "regressor" and coef.ndim == 2:
        raise Unsupported(f"{name} with several outputs")
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    spec: dict[str, Any] = {
        "kind": "linear", "task": task,
        "arrays": {
            "coef": writer.add("linear_coef", coef.T if coef.ndim == 2 else coef),
            "intercept": writer.add("linear_intercept", intercept),
        },
    }
    if task == "classifier":
        spec["arrays"]["classes"] = writer.add("linear_classes", estimator.classes_)
        spec["proba"] = _proba(estimator)
    return spec


class LinearModel:
    def __init__(self, spec: dict[str, Any], reader: ArrayReader, n_features: int) -> None:
        arrays = spec.get("arrays")
        if not isinstance(arrays, dict):
            raise CompiledFormatError("linear model spec has no arrays")
        self.task = spec_choice(spec, "task", ("classifier", "regressor"))
        self.coef = reader.open(arrays.get("coef"), "f")
        self.intercept = reader.open(arrays.get("intercept"), "f")
        self.classes = (reader.open(arrays.get("classes"), None, 1)
                        if self.task == "classifier" else None)
        outputs = 1 if self.coef.ndim == 1 else self.coef.shape[1]
        if self.coef.ndim not in (1, 2) or self.coef.shape[0] != n_features:
            raise CompiledFormatError(f"coefficients of shape {self.coef.shape} do not fit "
                                      f"{n_features} features")
        if self.intercept.ndim > 1 or self.intercept.size not in (1, outputs):
            raise CompiledFormatError("intercept and coefficients disagree on the outputs")
        expected_classes = 2 if outputs == 1 else outputs  # one score column: binary
        if self.classes is not None and len(self.classes) != expected_classes:
            raise CompiledFormatError("classes and coefficients disagree on the class count")
        if self.classes is not None and self.coef.ndim != 2:
            raise CompiledFormatError("a linear classifier needs a coefficient matrix")
        self.proba = spec.get("proba")
        if self.proba is not None and (self.proba not in PROBAS or self.classes is None):
            raise CompiledFormatError(f"unknown linear probabilities {self.proba!r}")
        # A 0-d intercept is a scalar to scikit-learn; index it once, not per request.
        self._intercept = self.intercept[()] if self.intercept.ndim == 0 else self.intercept

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows @ self.coef + self._intercept)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        scores = self._scores(rows)
        if self.classes is None:
            return np.asarray(scores)
        if scores.shape[1] == 1:
            return self.classes.take((scores[:, 0] > 0).astype(np.intp), axis=0)
        return self.classes.take(np.argmax(scores, axis=1), axis=0)

    @property
    def has_proba(self) -> bool:
        return self.proba is not None

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        if self.proba is None:
            raise ValueError("this linear model has no predict_proba")
        scores = self._scores(rows)
        if scores.shape[1] == 1:
            positive = np.empty(len(scores), dtype=np.float64)
            kernel.expit(np.ascontiguousarray(scores[:, 0]), positive)
            return np.stack([1 - positive, positive], axis=1)
        if self.proba == "logistic":
            return outputs.predict_proba("softmax", scores, 1)
        proba = np.array(scores, dtype=np.float64, order="C")
        flat = proba.reshape(-1)
        kernel.expit(flat.copy(), flat)
        sums = proba.sum(axis=1)
        all_zero = sums == 0
        if all_zero.any():
            proba[all_zero, :] = 1
            sums[all_zero] = proba.shape[1]
        proba /= sums.reshape((proba.shape[0], -1))
        return proba
