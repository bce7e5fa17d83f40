"""Every compiled tree model as one node table, walked by the native kernel.

All trees of a model are concatenated into one table (arrays in `compiled/arrays/`):

    children      intp (nodes, 2)  global index of the left and right child; a leaf
                                   points to itself in both columns
    feature       intp (nodes,)    feature a node splits on (0 for leaves)
    threshold     f8   (nodes,)    go left when x[feature] <= threshold
    values        f8   (nodes, w)  what a leaf adds: w columns (a forest's class rows) or
                                   one value added to the tree's column
    roots         intp (trees,)    index of each tree's root; tree t owns nodes
                                   roots[t] .. roots[t+1]-1, in pre-order
    leaf          bool (nodes,)    whether a node is a leaf (checked against children)
    classes       (k,)             classifiers only: the labels
  format 2 adds (absent in format 1, read as "no NaN, no categories"):
    missing_left  bool (nodes,)    where NaN goes (and an unknown category)
    tree_column   intp (trees,)    boosting: the raw-score column a tree adds to
    baseline      f8   (columns,)  boosting: raw score before the first tree
    cat_node      intp (nodes,)    categorical splits: bitset row of a node, -1 numeric
    left_bits     u4   (m, 8)      categories that go left, 256 bits a row
    cat_feature_row intp (features,)  row of a feature in known_bits, -1 if numeric
    known_bits    u4   (c, 8)      categories seen in training, per categorical feature
  and, for XGBoost and LightGBM (`xgboost_trees`, `lightgbm_trees`):
    zero_missing  bool (nodes,)    LightGBM's missing type Zero: 0.0 goes where NaN goes
    truncate_columns intp (c,)     LightGBM's categorical inputs: truncated to an integer
                                   category, no known-categories check (unknown goes right)

The spec says how the kernel's raw scores become answers (`inferd.model.compiled.outputs`):
`output`, `round32` (inputs rounded to float32 first, as scikit-learn's trees and
GradientBoosting* do; HistGradientBoosting* compares in float64) and `allow_nan`;
`sum32` (sums rounded to float32 after every tree, as XGBoost adds), `tiny_zero`
(LightGBM's zeros) and `columns` (the raw-score width of a model without classes).
A slot written in format 1 (forests and single trees only) still loads: the defaults
above are what format 1 meant, and it refused NaN as it did then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferd.model.compiled import kernel, outputs
from inferd.model.compiled.categories import CategoryEncoder
from inferd.model.compiled.format import (
    ArrayReader,
    ArrayWriter,
    CompiledFormatError,
    spec_choice,
    spec_int,
)

BITSET_WORDS = kernel.BITSET_WORDS


@dataclass
class Tree:
    """One tree before concatenation; indices local to the tree, pre-order, -1 = leaf."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    values: np.ndarray  # (nodes, w)
    missing_left: np.ndarray
    column: int = 0
    cat_node: np.ndarray | None = None  # local bitset row or -1
    zero_missing: np.ndarray | None = None  # LightGBM's missing type Zero
    left_bits: np.ndarray = field(default_factory=lambda: np.zeros((0, BITSET_WORDS),
                                                                   np.uint32))


def write_table(trees: list[Tree], writer: ArrayWriter, spec: dict[str, Any]) -> dict[str, Any]:
    """Concatenate `trees` into the node table and add its arrays to `spec`."""
    children, feature, threshold, values, missing, cat_node, bits = [], [], [], [], [], [], []
    zeros = []
    roots, offset, bit_offset = [], 0, 0
    for tree in trees:
        nodes = len(tree.left)
        index = np.arange(offset, offset + nodes, dtype=np.intp)
        leaf = tree.left == -1
        pair = np.empty((nodes, 2), dtype=np.intp)
        pair[:, 0] = np.where(leaf, index, tree.left + offset)
        pair[:, 1] = np.where(leaf, index, tree.right + offset)
        children.append(pair)
        feature.append(np.where(leaf, 0, tree.feature).astype(np.intp))
        threshold.append(np.where(leaf, 0.0, tree.threshold).astype(np.float64))
        values.append(np.asarray(tree.values, dtype=np.float64))
        missing.append(np.asarray(tree.missing_left, dtype=bool) & ~leaf)
        local = tree.cat_node if tree.cat_node is not None else np.full(nodes, -1)
        cat_node.append(np.where(local >= 0, local + bit_offset, -1).astype(np.intp))
        bits.append(tree.left_bits)
        zeros.append(np.zeros(nodes, dtype=bool) if tree.zero_missing is None
                     else np.asarray(tree.zero_missing, dtype=bool) & ~leaf)
        bit_offset += len(tree.left_bits)
        roots.append(offset)
        offset += nodes
    table = np.concatenate(children)
    arrays = spec.setdefault("arrays", {})
    arrays.update({
        "children": writer.add("tree_children", table),
        "feature": writer.add("tree_feature", np.concatenate(feature)),
        "threshold": writer.add("tree_threshold", np.concatenate(threshold)),
        "values": writer.add("tree_values", np.concatenate(values)),
        "roots": writer.add("tree_roots", np.asarray(roots, dtype=np.intp)),
        # Derivable from children, but stored so that the workers share it too.
        "leaf": writer.add("tree_leaf", table[:, 0] == np.arange(len(table))),
        "missing_left": writer.add("tree_missing_left", np.concatenate(missing)),
        "tree_column": writer.add("tree_column",
                                  np.asarray([t.column for t in trees], dtype=np.intp)),
    })
    if any(z.any() for z in zeros):
        arrays["zero_missing"] = writer.add("tree_zero_missing", np.concatenate(zeros))
    if bit_offset:
        arrays["cat_node"] = writer.add("tree_cat_node", np.concatenate(cat_node))
        arrays["left_bits"] = writer.add("tree_left_bits", np.concatenate(bits))
    spec["n_trees"] = len(trees)
    return spec


# The kernel's signature: an array of another dtype or layout is refused at load, not
# at the first prediction.
_KERNEL_DTYPES = {"children": np.intp, "feature": np.intp, "threshold": np.float64,
                  "missing_left": np.bool_, "leaf": np.bool_, "roots": np.intp,
                  "tree_column": np.intp, "values": np.float64, "cat_node": np.intp,
                  "zero_missing": np.bool_,
                  "left_bits": np.uint32, "cat_feature_row": np.intp,
                  "known_bits": np.uint32}
_EMPTY_INTP = np.zeros(0, dtype=np.intp)
_EMPTY_BOOL = np.zeros(0, dtype=np.bool_)
_EMPTY_BITS = np.zeros((0, BITSET_WORDS), dtype=np.uint32)


class TreeEnsemble:
    """A compiled tree model opened from mmapped arrays; every index checked once here,
    so that the kernel, which checks nothing, cannot read out of bounds or loop."""

    def __init__(self, spec: dict[str, Any], reader: ArrayReader, n_features: int) -> None:
        arrays = spec.get("arrays")
        if not isinstance(arrays, dict):
            raise CompiledFormatError("tree model spec has no arrays")
        self.task = spec_choice(spec, "task", ("classifier", "regressor"))
        self.combine = spec_choice(spec, "combine", ("single", "mean", "sum"))
        default_output = outputs.FORMAT1_OUTPUTS[(self.task, self.combine)] \
            if self.combine != "sum" else None
        self.output = spec_choice({"output": spec.get("output", default_output)}, "output",
                                  outputs.NAMES)
        self.round32 = bool(spec.get("round32", True))
        self.allow_nan = bool(spec.get("allow_nan", False))
        self.sum32 = bool(spec.get("sum32", False))
        self.tiny_zero = bool(spec.get("tiny_zero", False))
        self.n_features = n_features

        def optional(name: str, kind: str, ndim: int, default: Any) -> np.ndarray:
            return reader.open(arrays[name], kind, ndim) if name in arrays else default

        self.children = reader.open(arrays.get("children"), "i", 2)
        self.feature = reader.open(arrays.get("feature"), "i", 1)
        self.threshold = reader.open(arrays.get("threshold"), "f", 1)
        self.values = reader.open(arrays.get("values"), "f", 2)
        self.roots = reader.open(arrays.get("roots"), "i", 1)
        self.leaf = reader.open(arrays.get("leaf"), "b", 1)
        self.classes = (reader.open(arrays.get("classes"), None, 1)
                        if self.task == "classifier" else None)
        nodes, trees = len(self.feature), len(self.roots)
        self.missing_left = optional("missing_left", "b", 1, np.zeros(nodes, dtype=bool))
        self.tree_column = optional("tree_column", "i", 1, np.zeros(trees, dtype=np.intp))
        self.zero_missing = optional("zero_missing", "b", 1, _EMPTY_BOOL)
        self.cat_node = optional("cat_node", "i", 1, _EMPTY_INTP)
        self.left_bits = optional("left_bits", "u", 2, _EMPTY_BITS)
        self.encoder = CategoryEncoder.open(spec.get("categories"), reader, n_features)
        self.cat_feature_row = self.encoder.feature_row if self.encoder else _EMPTY_INTP
        self.known_bits = self.encoder.known_bits if self.encoder else _EMPTY_BITS
        self.truncate = optional("truncate_columns", "i", 1, None)
        if self.truncate is not None:
            self._truncated_categories()
        self.columns = self._columns(spec)
        baseline = optional("baseline", "f", 1, np.zeros(self.columns))
        self.baseline = np.ascontiguousarray(baseline, dtype=np.float64)
        self._check()
        self.n_trees = trees
        # Set only when the row-major walk is the faster one (kernel.accumulate_rows).
        self._depth = kernel.tree_depths(self.children, self.roots, self.leaf) \
            if self._rows_walk_fits() else None
        self._inputs = ((kernel.KEEP if not self.round32 else
                         kernel.FLOAT32_NAN if self.allow_nan else kernel.FLOAT32)
                        | (kernel.SUM32 if self.sum32 else 0)
                        | (kernel.TINY_ZERO if self.tiny_zero else 0))
        # PERF: the kernels' table arguments, gathered once rather than read attribute
        # by attribute on every call (a one-row prediction is a few microseconds).
        self._table = (self.children, self.feature, self.threshold, self.missing_left,
                       self.leaf, self.roots, self.tree_column, self.values,
                       self.zero_missing, self.cat_node, self.left_bits,
                       self.cat_feature_row, self.known_bits, self.baseline)
        self._rows_table = (self.children, self.feature, self.threshold, self.missing_left,
                            self.roots, self._depth, self.values, self.zero_missing,
                            self.baseline) if self._depth is not None else None
        # The entry points past numba's checks, only for tables of exactly their types.
        self._accumulate = (kernel.accumulate_unchecked if kernel.takes_exactly(
            kernel.SIGNATURE, self._table) else kernel.accumulate)
        self._accumulate_rows = (kernel.accumulate_rows_unchecked if self._rows_table and
                                 kernel.takes_exactly(kernel.ROWS_SIGNATURE,
                                                      self._rows_table)
                                 else kernel.accumulate_rows)

    def _rows_walk_fits(self) -> bool:
        """One raw score a row, no categorical split and a table that stays in cache."""
        table_bytes = sum(getattr(self, name).nbytes for name in _KERNEL_DTYPES)
        return (self.columns == 1 and self.values.shape[1] == 1
                and not bool((np.asarray(self.cat_node) >= 0).any())
                and table_bytes <= kernel.ROW_MAJOR_BYTES)

    def _truncated_categories(self) -> None:
        """LightGBM's categorical features: every category not in a split's bitset goes
        right, so every such feature points at one row of no known categories."""
        assert self.truncate is not None
        columns = np.asarray(self.truncate)
        if self.encoder is not None or not bool(
                ((columns >= 0) & (columns < self.n_features)).all()):
            raise CompiledFormatError("truncated categorical columns out of range")
        row = np.full(self.n_features, -1, dtype=np.intp)
        row[columns] = 0
        self.cat_feature_row = row
        self.known_bits = np.zeros((1, BITSET_WORDS), dtype=np.uint32)

    def _columns(self, spec: dict[str, Any]) -> int:
        if self.combine != "sum":
            return int(self.values.shape[1])
        if "columns" in spec:
            return spec_int(spec, "columns", 1)
        if self.classes is not None and len(self.classes) > 2:
            return len(self.classes)
        return 1

    def _check(self) -> None:
        for name, dtype in _KERNEL_DTYPES.items():
            array = getattr(self, name)
            if array.dtype != dtype or not array.flags.c_contiguous:
                raise CompiledFormatError(f"tree array {name} is {array.dtype}, the kernel "
                                          f"reads {np.dtype(dtype)} in C order")
        nodes = len(self.feature)
        roots = np.asarray(self.roots)
        if (nodes == 0 or self.children.shape != (nodes, 2) or len(self.threshold) != nodes
                or self.values.shape[0] != nodes or len(roots) == 0
                or self.missing_left.shape != (nodes,)
                or self.zero_missing.shape not in ((0,), (nodes,))):
            raise CompiledFormatError("tree arrays disagree on the number of nodes")
        if self.combine == "single" and len(roots) != 1:
            raise CompiledFormatError("a single tree model has more than one root")
        if roots[0] != 0 or not bool((np.diff(roots) > 0).all()) or roots[-1] >= nodes:
            raise CompiledFormatError("tree roots are not increasing offsets into the nodes")
        self._check_outputs()
        ends = np.append(roots[1:], nodes)
        tree_end = np.repeat(ends, ends - roots)
        index = np.arange(nodes)
        children = np.asarray(self.children)
        leaf = (children[:, 0] == index) & (children[:, 1] == index)
        inner = ~leaf
        # Pre-order: a child comes after its parent and inside its tree, which rules out
        # cycles (a traversal that never ends) and reads past the table.
        kids = children[inner]
        owner = index[inner, np.newaxis]
        if not bool(((kids > owner) & (kids < tree_end[inner, np.newaxis])).all()):
            raise CompiledFormatError(
                "tree nodes point outside their tree or backwards (corrupt or hostile file)")
        feature = np.asarray(self.feature)
        if not bool(((feature >= 0) & (feature < self.n_features)).all()):
            raise CompiledFormatError("a tree node splits on a feature the model does not have")
        # The kernel tests the stored leaf flags (mapped, shared by the workers), so
        # they must say exactly what the children say.
        if self.leaf.shape != (nodes,) or not np.array_equal(self.leaf, leaf):
            raise CompiledFormatError("stored leaf flags disagree with the tree children")
        self._check_categories(nodes, feature)

    def _check_outputs(self) -> None:
        width, trees = self.values.shape[1], len(self.roots)
        if self.classes is not None and len(self.classes) < 1:
            raise CompiledFormatError("a classifier without classes")
        if self.combine != "sum" and self.classes is not None and width != len(self.classes):
            raise CompiledFormatError("leaf values and classes disagree on the class count")
        if (self.combine == "sum" or self.classes is None) and width != 1:
            raise CompiledFormatError("a boosted or regression tree's leaves hold one value")
        if self.tree_column.shape != (trees,) or not bool(
                ((self.tree_column >= 0) & (self.tree_column < self.columns)).all()):
            raise CompiledFormatError("a tree adds to a raw-score column the model lacks")
        if self.baseline.shape != (self.columns,):
            raise CompiledFormatError("the baseline does not have one value a column")
        outputs.check(self.output, self.task, self.columns,
                      len(self.classes) if self.classes is not None else 0)

    def _check_categories(self, nodes: int, feature: np.ndarray) -> None:
        if len(self.cat_node) == 0:
            return
        if self.encoder is None and self.truncate is None:
            raise CompiledFormatError("categorical splits without the categories' encoder")
        if self.cat_node.shape != (nodes,) or self.left_bits.shape[1:] != (BITSET_WORDS,):
            raise CompiledFormatError("categorical split arrays have the wrong shape")
        split = np.asarray(self.cat_node) >= 0
        if not bool((np.asarray(self.cat_node)[split] < len(self.left_bits)).all()):
            raise CompiledFormatError("a categorical split names a bitset that is not there")
        rows = np.asarray(self.cat_feature_row)
        if not bool((rows[feature[split & ~self.leaf]] >= 0).all()):
            raise CompiledFormatError("a categorical split on a feature without categories")

    # -- prediction -----------------------------------------------------------------------

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The raw scores: per row, the baseline plus every tree's leaf, in tree order."""
        if self.encoder is not None:
            rows = self.encoder.transform(rows)
        elif self.truncate is not None and len(self.truncate):
            # C's (int) cast, as LightGBM reads a category: -0.5 is category 0.
            rows = np.array(rows, dtype=np.float64)
            rows[:, self.truncate] = np.trunc(rows[:, self.truncate])
        x = np.ascontiguousarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:  # the kernel reads x unchecked
            raise ValueError(f"expected rows of {self.n_features} features, got {x.shape}")
        out = np.empty((len(x), self.columns), dtype=np.float64)
        # Fewer rows than the walk's lanes would repeat a row's walk for nothing.
        if self._rows_table is not None and len(x) >= kernel.LANES:
            answer = self._accumulate_rows(x, self._inputs, *self._rows_table, out)
        else:
            answer = self._accumulate(x, self._inputs, *self._table, out)
        if answer == kernel.REFUSED:
            raise ValueError("Input X contains NaN, infinity or a value too large for "
                             "dtype('float32').")
        return out

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return outputs.predict(self.output, self.raw(rows), self.n_trees, self.classes)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return outputs.predict_proba(self.output, self.raw(rows), self.n_trees)

    @property
    def has_proba(self) -> bool:
        return self.task == "classifier"
