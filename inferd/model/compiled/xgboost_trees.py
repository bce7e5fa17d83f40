"""XGBoost's gbtree models into the node table (`trees`), from the booster's own JSON.

Read from `Booster.save_raw("json")` (the model's complete, versioned JSON schema:
learner_model_param, objective, gradient_booster.model.trees with flat node arrays),
never from a pickle, in the process doing a reload; the xgboost module itself is not
imported here: the estimator hands over its booster.

XGBoost's arithmetic (src/predictor/cpu_predictor.cc, src/tree/tree_model.cc), repeated:

- the inputs are float32 (a DMatrix or an inplace adapter stores `float`), NaN is
  missing and takes the node's `default_left`;
- a node goes left when x < split_condition (float32). The kernel goes left when
  x <= threshold, so the threshold stored is the float32 just below the condition:
  for float32 x, x < c exactly when x <= nextafter(c, -inf);
- a leaf's value is its split_condition; each row's raw score starts at the base
  margin (base_score, turned into a margin by the objective: logit for the logistic
  objectives, as is otherwise) and adds the trees' leaves in model order, in float32
  (`sum32`), each tree to its class's column (`tree_info`);
- the objective's transform is in `library_outputs`.

Supported: objectives binary:logistic, reg:logistic (predict = P(1)), multi:softprob,
multi:softmax, reg:squarederror, reg:absoluteerror, reg:pseudohubererror,
binary:logitraw; numeric splits (a categorical split has no compiled form yet); one
target. Anything else raises Unsupported and the slot serves the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

import numpy as np

from inferd.model.compiled.format import ArrayWriter, Unsupported
from inferd.model.compiled.trees import Tree, write_table

WRAPPERS = {"XGBClassifier", "XGBRegressor"}
BOOSTER = "XGBoostBooster"  # inferd.model.flavors: a native Booster of the xgboost flavor
SUPPORTED = WRAPPERS | {BOOSTER}
_IDENTITY = {"reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror",
             "binary:logitraw"}
_LOGISTIC = {"binary:logistic", "reg:logistic"}
_SOFTMAX = {"multi:softprob", "multi:softmax"}


def compile_xgboost(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    missing = getattr(estimator, "missing", np.nan) if name in WRAPPERS else np.nan
    if missing is not None and not np.isnan(float(missing)):
        # Random verification rows rarely hold the exact value, so refuse it here.
        raise Unsupported(f"{name} with missing={missing!r} (only NaN is missing here)")
    booster = estimator.booster if name == BOOSTER else estimator.get_booster()
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise Unsupported(f"XGBoost booster {booster_kind!r} (only gbtree compiles)")
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) != 1:
        raise Unsupported("XGBoost with several targets")
    columns = max(1, int(params.get("num_class", 0)))
    gbtree = learner["gradient_booster"]["model"]
    trees, groups = gbtree["trees"], gbtree["tree_info"]
    limit = _tree_limit(estimator, name, gbtree)
    table = [_tree(t, int(g)) for t, g in zip(trees[:limit], groups[:limit], strict=True)]
    if not table:
        raise Unsupported("an XGBoost model without trees")
    output, task = _output(name, objective, columns)
    spec: dict[str, Any] = {"kind": "trees", "task": task, "combine": "sum",
                            "output": output, "round32": True, "allow_nan": True,
                            "sum32": True, "columns": columns}
    write_table(table, writer, spec)
    spec["arrays"]["baseline"] = writer.add(
        "tree_baseline", _base_margin(params["base_score"], objective, columns))
    if task == "classifier":
        classes = np.arange(2 if columns == 1 else columns)
        spec["arrays"]["classes"] = writer.add("tree_classes", classes)
    return spec


def _output(name: str, objective: str, columns: int) -> tuple[str, str]:
    """(output, task) for this objective served through this class."""
    if name == "XGBClassifier":
        if objective == "binary:logistic":
            return "xgb_logistic", "classifier"
        if objective == "multi:softprob":
            return "xgb_softprob", "classifier"
        if objective == "multi:softmax":
            return "xgb_softmax", "classifier"
    elif objective in _IDENTITY:
        return "xgb_value", "regressor"
    elif objective in _LOGISTIC or (name == BOOSTER and objective == "multi:softprob"):
        return "xgb_booster", "regressor"
    elif name == BOOSTER and objective == "multi:softmax":
        return "xgb_booster_label", "regressor"
    raise Unsupported(f"{name} with objective {objective}")


def _tree_limit(estimator: Any, name: str, gbtree: dict[str, Any]) -> int:
    """How many trees the library predicts with: XGBClassifier and XGBRegressor stop at
    `best_iteration` when early stopping set one (`XGBModel._get_iteration_range`); a
    native Booster's predict uses every tree."""
    indptr = gbtree["iteration_indptr"]
    best = getattr(estimator, "best_iteration", None) if name in WRAPPERS else None
    try:
        best = None if best is None else int(best)
    except (TypeError, ValueError):
        best = None
    if best is None or best + 1 >= len(indptr):
        return int(indptr[-1])
    return int(indptr[best + 1])


def _tree(tree: dict[str, Any], group: int) -> Tree:
    if int(tree["tree_param"].get("num_deleted", 0)) or int(
            tree["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise Unsupported("an XGBoost tree with deleted nodes or vector leaves")
    if any(int(t) != 0 for t in tree["split_type"]):
        raise Unsupported("XGBoost categorical splits")
    left = np.asarray(tree["left_children"], dtype=np.intp)
    condition = np.asarray(tree["split_conditions"], dtype=np.float32)
    leaf = left == -1
    below = np.nextafter(condition, np.float32(-np.inf))
    return Tree(left=left, right=np.asarray(tree["right_children"], dtype=np.intp),
                feature=np.asarray(tree["split_indices"], dtype=np.intp),
                threshold=np.where(leaf, 0.0, below.astype(np.float64)),
                values=np.where(leaf, condition, 0).astype(np.float64)[:, np.newaxis],
                missing_left=np.asarray(tree["default_left"], dtype=bool), column=group)


def _base_margin(text: str, objective: str, columns: int) -> np.ndarray:
    """The raw score before the first tree, as float32 values (in float64)."""
    values = np.asarray([float(v) for v in str(text).strip("[]").split(",")],
                        dtype=np.float32)
    if len(values) == 1:
        values = np.repeat(values, columns)
    if len(values) != columns:
        raise Unsupported(f"XGBoost base_score {text!r} for {columns} outputs")
    if objective in _LOGISTIC:
        # ProbToMargin of the logistic objectives: -log(1/p - 1) in float, with the C
        # library's logf, which XGBoost calls (numpy's float32 log may differ in the last bit).
        one = np.float32(1.0)
        values = np.asarray([-_logf(float(one / v - one)) for v in values], dtype=np.float32)
    return values.astype(np.float64)


def _logf(x: float) -> np.float32:
    name = ctypes.util.find_library("m")
    if name is None:
        raise Unsupported("no C math library to compute XGBoost's base margin")
    libm = ctypes.CDLL(name)
    libm.logf.restype = ctypes.c_float
    libm.logf.argtypes = [ctypes.c_float]
    return np.float32(libm.logf(x))
