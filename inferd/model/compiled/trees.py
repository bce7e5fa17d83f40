"""Decision trees, random forests and extra trees as flat arrays.

All trees of a model are concatenated into one node table, so one numpy operation
advances every (tree, row) pair by one level:

    children  intp (nodes, 2)   global index of the left and right child; a leaf
                                points to itself in both columns
    feature   intp (nodes,)     feature a node splits on (0 for leaves)
    threshold f8   (nodes,)     go left when x[feature] <= threshold
    values    f8   (nodes, k)   what a leaf contributes (see below)
    roots     intp (trees,)     index of each tree's root; tree t owns nodes
                                roots[t] .. roots[t+1]-1, in pre-order
    leaf      bool (nodes,)     whether a node is a leaf (checked against children)
    classes   (k,)              classifiers only: the labels argmax indexes

Equal to scikit-learn, bit for bit, by doing what it does in the same order:
inputs are cast to float32 and compared in float64 with the float64 thresholds
(`sklearn/tree/_tree.pyx`, `_apply_dense`); a forest classifier's leaf rows are each
tree's `predict_proba` rows (value normalised by its row sum, precomputed here with the
same numpy call), summed tree by tree from zero and divided by the tree count
(`sklearn/ensemble/_forest.py`, `_accumulate_prediction`); a single tree classifier takes
the argmax of the raw value rows, as `DecisionTreeClassifier.predict` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled.format import (
    ArrayReader,
    ArrayWriter,
    CompiledFormatError,
    Unsupported,
    spec_choice,
)

SINGLE = {"DecisionTreeClassifier", "ExtraTreeClassifier",
          "DecisionTreeRegressor", "ExtraTreeRegressor"}
FORESTS = {"RandomForestClassifier", "ExtraTreesClassifier",
           "RandomForestRegressor", "ExtraTreesRegressor"}
SUPPORTED = SINGLE | FORESTS
MAX_PAIRS = 1 << 20  # (tree, row) pairs traversed at once; bounds a request's memory


def compile_trees(estimator: Any, writer: ArrayWriter) -> dict[str, Any]:
    name = type(estimator).__name__
    if name not in SUPPORTED:
        raise Unsupported(name)
    if int(getattr(estimator, "n_outputs_", 1)) != 1:
        raise Unsupported(f"{name} with several outputs")
    task = "classifier" if name.endswith("Classifier") else "regressor"
    trees = [estimator] if name in SINGLE else list(estimator.estimators_)
    combine = "single" if name in SINGLE else "mean"
    n_classes = int(estimator.n_classes_) if task == "classifier" else 0
    children, feature, threshold, values, roots = [], [], [], [], []
    offset = 0
    for tree in trees:
        t = tree.tree_
        nodes = int(t.node_count)
        index = np.arange(offset, offset + nodes, dtype=np.intp)
        leaf = t.children_left == -1
        pair = np.empty((nodes, 2), dtype=np.intp)
        pair[:, 0] = np.where(leaf, index, t.children_left + offset)
        pair[:, 1] = np.where(leaf, index, t.children_right + offset)
        children.append(pair)
        feature.append(np.where(leaf, 0, t.feature).astype(np.intp))
        threshold.append(np.where(leaf, 0.0, t.threshold).astype(np.float64))
        values.append(_leaf_values(t.value, task, combine, n_classes))
        roots.append(offset)
        offset += nodes
    spec: dict[str, Any] = {
        "kind": "trees", "task": task, "combine": combine, "n_trees": len(trees),
        "arrays": {
            "children": writer.add("tree_children", np.concatenate(children)),
            "feature": writer.add("tree_feature", np.concatenate(feature)),
            "threshold": writer.add("tree_threshold", np.concatenate(threshold)),
            "values": writer.add("tree_values", np.concatenate(values)),
            "roots": writer.add("tree_roots", np.asarray(roots, dtype=np.intp)),
            # Derivable from children, but stored so that workers share it too.
            "leaf": writer.add("tree_leaf", np.concatenate(
                [np.asarray(t.tree_.children_left == -1) for t in trees])),
        },
    }
    if task == "classifier":
        spec["arrays"]["classes"] = writer.add("tree_classes", estimator.classes_)
    return spec


def _leaf_values(value: np.ndarray, task: str, combine: str, n_classes: int) -> np.ndarray:
    if task == "regressor":
        return np.ascontiguousarray(value[:, 0, :1], dtype=np.float64)
    rows = np.ascontiguousarray(value[:, 0, :n_classes], dtype=np.float64)
    if combine == "single":
        return rows  # DecisionTreeClassifier.predict: argmax of the raw rows
    # DecisionTreeClassifier.predict_proba, row by row: the same sum and division.
    normalizer = rows.sum(axis=1)[:, np.newaxis]
    normalizer[normalizer == 0.0] = 1.0
    rows /= normalizer
    return rows


class TreeEnsemble:
    """A compiled tree model opened from mmapped arrays; every index checked once here."""

    def __init__(self, spec: dict[str, Any], reader: ArrayReader, n_features: int) -> None:
        arrays = spec.get("arrays")
        if not isinstance(arrays, dict):
            raise CompiledFormatError("tree model spec has no arrays")
        self.task = spec_choice(spec, "task", ("classifier", "regressor"))
        self.combine = spec_choice(spec, "combine", ("single", "mean"))
        self.n_features = n_features
        self.children = reader.open(arrays.get("children"), "i", 2)
        self.feature = reader.open(arrays.get("feature"), "i", 1)
        self.threshold = reader.open(arrays.get("threshold"), "f", 1)
        self.values = reader.open(arrays.get("values"), "f", 2)
        self.roots = reader.open(arrays.get("roots"), "i", 1)
        self.leaf = reader.open(arrays.get("leaf"), "b", 1)
        self.classes = (reader.open(arrays.get("classes"), None, 1)
                        if self.task == "classifier" else None)
        self.depth, self.mean_leaf_depth = self._check()
        self.n_trees = len(self.roots)
        self._flat_children = self.children.reshape(-1)
        self._zero_offsets = np.zeros(self.n_trees, dtype=np.intp)

    def _check(self) -> tuple[int, float]:
        """Refuse arrays whose indices could read out of bounds or loop; return the
        depth of the deepest tree (levels a traversal must take) and the mean depth of
        a leaf (what a batch costs, see `inferd.model.batch`)."""
        nodes = len(self.feature)
        roots = np.asarray(self.roots)
        if (nodes == 0 or self.children.shape != (nodes, 2) or len(self.threshold) != nodes
                or self.values.shape[0] != nodes or len(roots) == 0):
            raise CompiledFormatError("tree arrays disagree on the number of nodes")
        if self.combine == "single" and len(roots) != 1:
            raise CompiledFormatError("a single tree model has more than one root")
        if roots[0] != 0 or not bool((np.diff(roots) > 0).all()) or roots[-1] >= nodes:
            raise CompiledFormatError("tree roots are not increasing offsets into the nodes")
        width = self.values.shape[1]
        if self.classes is not None and (width != len(self.classes) or width < 1):
            raise CompiledFormatError("leaf values and classes disagree on the class count")
        if self.classes is None and width != 1:
            raise CompiledFormatError("a regressor's leaf values must have one column")
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
        # The traversal tests the stored leaf flags (mapped, shared by the workers), so
        # they must say exactly what the children say.
        if self.leaf.shape != (nodes,) or not np.array_equal(self.leaf, leaf):
            raise CompiledFormatError("stored leaf flags disagree with the tree children")
        return _depth(children, roots, leaf)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        scores = self.scores(rows)
        if self.classes is None:
            return scores[:, 0]
        return self.classes.take(np.argmax(scores, axis=1), axis=0)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Per row: the class probabilities (forest classifier), raw class values (one
        tree classifier) or the regression value (one column)."""
        n = rows.shape[0]
        with np.errstate(over="ignore"):  # an overflow is reported just below
            as32 = rows.astype(np.float32)
        if not np.isfinite(as32).all():
            raise ValueError("Input X contains infinity or a value too large for "
                             "dtype('float32').")
        # scikit-learn compares the float32 feature with the float64 threshold in float64.
        as64 = as32.astype(np.float64)
        # Rows are independent, so a large batch goes in slices: the working arrays stay
        # near MAX_PAIRS entries (tens of MB) whatever the rows x trees of a request.
        step = max(1, MAX_PAIRS // self.n_trees)
        if n <= step:
            return self._scores(as64)
        return np.concatenate([self._scores(as64[i:i + step]) for i in range(0, n, step)])

    def _scores(self, rows64: np.ndarray) -> np.ndarray:
        n = rows64.shape[0]
        leaves = self._apply(rows64.reshape(-1), n)
        return self._combine(self.values[leaves].reshape(self.n_trees, n, -1))

    def _apply(self, xs: np.ndarray, n: int) -> np.ndarray:
        """The leaf each (tree, row) pair reaches; pair p = tree * n + row.

        Pairs that reached a leaf drop out of the working set, so the work follows the
        real path lengths rather than the deepest tree's depth (2-3x less on forests
        with uneven leaves). PERF: they drop out only once a quarter of the set has
        finished: leaves point to themselves, so a finished pair can ride along, and
        compacting costs six numpy calls (10-45% faster than compacting at every level,
        measured on iris and deep extra trees, 1 to 100 rows). `depth` bounds the loop
        whatever the arrays say.
        """
        feature, threshold, children = self.feature, self.threshold, self._flat_children
        is_leaf = self.leaf
        if n == 1:  # PERF: the common single-row request skips building both arrays
            start, offset = self.roots, self._zero_offsets
        else:
            start = np.repeat(self.roots, n)
            offset = np.arange(len(start), dtype=np.intp) % n * self.n_features
        reached = start.copy()
        pos = np.arange(len(start))
        active = start
        for _ in range(self.depth):
            go = 2 * active + 1
            go -= xs[offset + feature[active]] <= threshold[active]
            active = children[go]
            done = is_leaf[active]
            finished = np.count_nonzero(done)
            if finished * 4 >= len(active):
                reached[pos[done]] = active[done]
                if finished == len(active):
                    return reached
                keep = ~done
                pos, active, offset = pos[keep], active[keep], offset[keep]
        reached[pos] = active
        return reached

    def _combine(self, leaves: np.ndarray) -> np.ndarray:
        if self.combine == "single":
            return leaves[0]
        # Tree by tree, as the forest accumulates, then the mean. A reduction over the
        # outer axis adds whole (rows, k) planes in order (pairwise summation applies
        # only along the contiguous axis), so this equals the forest's loop bit for bit
        # (the hypothesis tests check it) at a fraction of the cost of a Python loop.
        out: np.ndarray = np.add.reduce(leaves, axis=0)
        out /= self.n_trees
        return out


def _depth(children: np.ndarray, roots: np.ndarray, leaf: np.ndarray) -> tuple[int, float]:
    """Levels from the roots to the deepest leaf, and the mean depth of a reachable
    leaf; one vectorised step per level."""
    frontier = roots
    depth = leaves = depth_sum = 0
    while True:
        at_leaf = leaf[frontier]
        leaves += int(at_leaf.sum())
        depth_sum += depth * int(at_leaf.sum())
        frontier = frontier[~at_leaf]
        if not len(frontier):
            return depth, depth_sum / max(leaves, 1)
        depth += 1
        frontier = children[frontier].reshape(-1)
