"""XGBoost's and LightGBM's last steps, from raw scores to what their `predict` and
`predict_proba` return, repeated with the same arithmetic (the kernel's `sigmoid32`,
`softmax32`, `softmax64`, `expit`) so the answers are equal to the bit.

XGBoost works in float32: its raw scores (`sum32` trees) and every transform are
float32 values, held here in float64 arrays (each one exactly a float32).

    xgb_logistic   XGBClassifier, binary:logistic: P(1) = sigmoid32(raw), label =
                   P(1) > 0.5, probabilities [1 - P(1), P(1)] in float32
    xgb_softprob   XGBClassifier, multi:softprob: probabilities = softmax32, label =
                   argmax of the probabilities
    xgb_softmax    XGBClassifier, multi:softmax: label = argmax of the raw scores,
                   probabilities = scipy.special.softmax of the float32 raw scores
    xgb_value      XGBRegressor and a native Booster with an identity link (float32)
    xgb_booster    a native xgboost Booster's probabilities (its flavor's pyfunc
                   `predict`): P(1) alone for binary:logistic, the softmax32 rows for
                   multi:softprob
    xgb_booster_label  a native Booster with multi:softmax: argmax as float32
    lgb_binary     LGBMClassifier, binary: P(1) = 1 / (1 + exp(-raw)) in double,
                   probabilities [1 - P(1), P(1)], label = argmax of those
    lgb_multiclass LGBMClassifier, multiclass: probabilities = softmax64, label = argmax
    lgb_booster    a native lightgbm Booster's probabilities: P(1) alone (binary) or
                   the softmax64 rows (a regression Booster is `value`, `outputs`)
"""

from __future__ import annotations

import numpy as np

from inferd.model.compiled import kernel

CLASSIFIER_BINARY = ("xgb_logistic", "lgb_binary")
CLASSIFIER_MULTI = ("xgb_softprob", "xgb_softmax", "lgb_multiclass")
REGRESSION = ("xgb_value", "xgb_booster", "xgb_booster_label", "lgb_booster")
NAMES = CLASSIFIER_BINARY + CLASSIFIER_MULTI + REGRESSION


def check(output: str, task: str, columns: int, n_classes: int) -> bool:
    """Whether `output` fits raw scores of `columns` and the task."""
    if task == "classifier":
        return ((output in CLASSIFIER_BINARY and columns == 1 and n_classes == 2)
                or (output in CLASSIFIER_MULTI and columns == n_classes > 2))
    if output == "xgb_booster_label":
        return columns > 2
    return output in REGRESSION and (columns == 1 or output != "xgb_value")


def _sigmoid32(raw: np.ndarray) -> np.ndarray:
    positive = np.empty(len(raw), dtype=np.float64)
    kernel.sigmoid32_unchecked(np.ascontiguousarray(raw[:, 0]), positive)
    return positive


def _expit(raw: np.ndarray) -> np.ndarray:
    positive = np.empty(len(raw), dtype=np.float64)
    kernel.expit_unchecked(np.ascontiguousarray(raw[:, 0]), positive)
    return positive


def _softmax(raw: np.ndarray, float32: bool) -> np.ndarray:
    out = np.empty(raw.shape, dtype=np.float64)
    (kernel.softmax32 if float32 else kernel.softmax64)(np.ascontiguousarray(raw), out)
    return out


def _scipy_softmax32(raw: np.ndarray) -> np.ndarray:
    """scipy.special.softmax on XGBoost's float32 raw scores, with the same numpy calls."""
    x = raw.astype(np.float32)
    shifted = np.exp(x - np.amax(x, axis=1, keepdims=True))
    return (shifted / np.sum(shifted, axis=1, keepdims=True)).astype(np.float64)


def _binary_rows(positive: np.ndarray, float32: bool) -> np.ndarray:
    """[1 - P(1), P(1)], the subtraction in the library's precision."""
    one = positive.astype(np.float32) if float32 else positive
    return np.vstack((1.0 - one, one)).transpose().astype(np.float64)


def predict_proba(output: str, raw: np.ndarray) -> np.ndarray:
    if output == "xgb_logistic":
        return _binary_rows(_sigmoid32(raw), float32=True)
    if output == "lgb_binary":
        return _binary_rows(_expit(raw), float32=False)
    if output in ("xgb_softprob", "lgb_multiclass"):
        return _softmax(raw, float32=output == "xgb_softprob")
    if output == "xgb_softmax":
        return _scipy_softmax32(raw)
    raise ValueError(f"a model with output {output!r} has no predict_proba")


def predict(output: str, raw: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if output == "xgb_value":
        return raw[:, 0].copy()
    if output == "xgb_booster_label":
        return np.argmax(raw, axis=1).astype(np.float32).astype(np.float64)
    if output in ("xgb_booster", "lgb_booster"):
        if raw.shape[1] > 1:
            return _softmax(raw, float32=output == "xgb_booster")
        return _sigmoid32(raw) if output == "xgb_booster" else _expit(raw)
    assert classes is not None  # check() made sure of it when the slot was opened
    if output == "xgb_logistic":
        return classes[(_sigmoid32(raw) > 0.5).astype(int)]
    if output == "xgb_softmax":
        return classes.take(np.argmax(raw, axis=1), axis=0)
    if output == "lgb_binary":
        # The argmax of [1 - P(1), P(1)] (the first on a tie), without building the
        # rows: PERF, most of a one-row prediction's wrapper time went into vstack.
        positive = _expit(raw)
        return classes[(positive > 1.0 - positive).astype(np.intp)]
    return classes.take(np.argmax(predict_proba(output, raw), axis=1), axis=0)
