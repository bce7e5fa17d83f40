"""LightGBM's gbdt models into the node table (`trees`), from `Booster.dump_model()`.

The dump is LightGBM's own JSON description of the trees (thresholds and leaf values
printed with 17 significant digits, so they read back as the same doubles); the
lightgbm module itself is not imported here: the estimator hands over its booster.

LightGBM's arithmetic (include/LightGBM/tree.h, `NumericalDecision`,
`CategoricalDecision`; src/c_api.cpp's dense row reader), repeated:

- inputs are doubles; a value with |x| <= 1e-35 (kZeroThreshold) is read as 0.0
  (the row reader keeps only non-zeros), the kernel's `tiny_zero`;
- a numeric node goes left when x <= threshold. NaN goes the node's default side when
  its missing type is NaN; with missing type Zero, NaN and 0.0 go the default side
  (`zero_missing`); with None, NaN is read as 0.0, which is decided here once:
  missing_left = 0.0 <= threshold;
- a categorical node sends NaN and negative values right, and otherwise the category
  (int)x left when it is in the split's bitset, else right: the columns it splits on
  are truncated toward zero first (`truncate_columns`), and no category counts as known;
- each row's raw score starts at 0.0 and adds the trees' leaves in model order in double,
  each tree to its class's column (tree i to class i % num_tree_per_iteration); the
  boost-from-average start is already in the first trees' leaves;
- the objective's transform is in `library_outputs` (binary: the sigmoid with
  sigmoid:1; multiclass: softmax), regression objectives are the raw score.

Supported: objectives binary (sigmoid 1), multiclass, regression, regression_l1,
huber, fair, quantile, mape; categories below 256. Anything else (random-forest
averaging, linear trees, pandas categories, multiclassova, poisson...) raises
Unsupported and the slot serves the library.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled.format import ArrayWriter, Unsupported
from inferd.model.compiled.trees import BITSET_WORDS, Tree, write_table

WRAPPERS = {"LGBMClassifier", "LGBMRegressor"}
BOOSTER = "LightGBMBooster"  # inferd.model.flavors: a native Booster of the lightgbm flavor
SUPPORTED = WRAPPERS | {BOOSTER}
_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
_MAX_CATEGORY = BITSET_WORDS * 32 - 1


def compile_lightgbm(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    booster = estimator.booster if name == BOOSTER else estimator.booster_
    dump = booster.dump_model()
    if dump.get("average_output") or dump.get("pandas_categorical"):
        raise Unsupported("LightGBM with averaged output (rf) or pandas categories")
    columns = int(dump["num_tree_per_iteration"])
    output, task = _output(name, str(dump["objective"]), columns)
    truncate: set[int] = set()
    table = [_tree(info["tree_structure"], index % columns, truncate)
             for index, info in enumerate(dump["tree_info"])]
    if not table:
        raise Unsupported("a LightGBM model without trees")
    spec: dict[str, Any] = {"kind": "trees", "task": task, "combine": "sum",
                            "output": output, "round32": False, "allow_nan": True,
                            "tiny_zero": True, "columns": columns}
    write_table(table, writer, spec)
    spec["arrays"]["baseline"] = writer.add("tree_baseline", np.zeros(columns))
    spec["arrays"]["truncate_columns"] = writer.add(
        "tree_truncate_columns", np.asarray(sorted(truncate), dtype=np.intp))
    if task == "classifier":
        spec["arrays"]["classes"] = writer.add("tree_classes", estimator.classes_)
    return spec


def _output(name: str, objective: str, columns: int) -> tuple[str, str]:
    kind, *options = objective.split()
    if kind in _IDENTITY and columns == 1 and not options:
        return "value", "regressor"
    if kind == "binary" and options == ["sigmoid:1"] and name != "LGBMRegressor":
        return ("lgb_binary", "classifier") if name in WRAPPERS else ("lgb_booster", "regressor")
    if kind == "multiclass" and name != "LGBMRegressor":
        return (("lgb_multiclass", "classifier") if name in WRAPPERS
                else ("lgb_booster", "regressor"))
    raise Unsupported(f"{name} with objective {objective!r}")


class _Nodes:
    """One tree's nodes, appended in pre-order."""

    def __init__(self) -> None:
        self.left: list[int] = []
        self.right: list[int] = []
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.value: list[float] = []
        self.missing_left: list[bool] = []
        self.zero_missing: list[bool] = []
        self.cat_node: list[int] = []
        self.bits: list[np.ndarray] = []

    def add(self) -> int:
        for ints in (self.left, self.right, self.cat_node):
            ints.append(-1)
        self.feature.append(0)
        self.threshold.append(0.0)
        self.value.append(0.0)
        self.missing_left.append(False)
        self.zero_missing.append(False)
        return len(self.left) - 1


def _tree(root: dict[str, Any], column: int, truncate: set[int]) -> Tree:
    nodes = _Nodes()
    # Iterative pre-order: a deep tree (num_leaves in the thousands) must not hit
    # Python's recursion limit. Each entry: (node, parent index, is it the left child).
    stack: list[tuple[dict[str, Any], int, bool]] = [(root, -1, False)]
    while stack:
        node, parent, is_left = stack.pop()
        index = nodes.add()
        if parent >= 0:
            (nodes.left if is_left else nodes.right)[parent] = index
        if "leaf_value" in node or "split_feature" not in node:
            if "leaf_coeff" in node:
                raise Unsupported("LightGBM linear trees")
            nodes.value[index] = float(node.get("leaf_value", 0.0))
            continue
        _split(nodes, index, node, truncate)
        stack.append((node["right_child"], index, False))
        stack.append((node["left_child"], index, True))  # popped first: pre-order
    return Tree(left=np.asarray(nodes.left, dtype=np.intp),
                right=np.asarray(nodes.right, dtype=np.intp),
                feature=np.asarray(nodes.feature, dtype=np.intp),
                threshold=np.asarray(nodes.threshold, dtype=np.float64),
                values=np.asarray(nodes.value, dtype=np.float64)[:, np.newaxis],
                missing_left=np.asarray(nodes.missing_left, dtype=bool),
                column=column,
                cat_node=np.asarray(nodes.cat_node, dtype=np.intp),
                left_bits=(np.vstack(nodes.bits) if nodes.bits
                           else np.zeros((0, BITSET_WORDS), dtype=np.uint32)),
                zero_missing=np.asarray(nodes.zero_missing, dtype=bool))


def _split(nodes: _Nodes, index: int, node: dict[str, Any], truncate: set[int]) -> None:
    feature = int(node["split_feature"])
    nodes.feature[index] = feature
    missing = node.get("missing_type", "None")
    default_left = bool(node.get("default_left", False))
    if node["decision_type"] == "==":
        categories = [int(c) for c in str(node["threshold"]).split("||")]
        if min(categories) < 0 or max(categories) > _MAX_CATEGORY:
            raise Unsupported(f"a LightGBM category outside 0..{_MAX_CATEGORY}")
        bits = np.zeros(BITSET_WORDS, dtype=np.uint32)
        for category in categories:
            bits[category >> 5] |= np.uint32(1 << (category & 31))
        nodes.cat_node[index] = len(nodes.bits)
        nodes.bits.append(bits[np.newaxis, :])
        truncate.add(feature)
        return  # NaN goes right: missing_left stays False
    if node["decision_type"] != "<=":
        raise Unsupported(f"LightGBM decision type {node['decision_type']!r}")
    threshold = float(node["threshold"])
    nodes.threshold[index] = threshold
    if missing == "None":
        nodes.missing_left[index] = 0.0 <= threshold
    elif missing in ("NaN", "Zero"):
        nodes.missing_left[index] = default_left
        nodes.zero_missing[index] = missing == "Zero"
    else:
        raise Unsupported(f"LightGBM missing type {missing!r}")
