"""The native tree kernel: one compiled loop for every tree model inferd serves.

Every compiled tree model (single trees, forests, scikit-learn's gradient boosting and
histogram gradient boosting) is the same node table (`inferd.model.compiled.trees` documents
the arrays); `accumulate` walks it for a batch of rows and adds each tree's leaf to the
rows' raw scores. It is compiled with numba once, eagerly, for the one signature below
(read-only arrays: the slot's memory-mapped files), when this module is imported: in
the gunicorn master before it forks (`inferd.server.preload`), so the workers share the
machine code and never compile. Measured on the 2-core development VM
(`python -m benchmarks.kernel`): numba's import and the compile take 1-4 s (0.4 s from
numba's on-disk cache, see `_compiled`) and about 130 MB RSS in the master, 70 MB of
which `release_compiler_pages` gives back before the fork.

Equal to the training library bit for bit because it adds the same float64 numbers in
the same order: for each (row, output column) the trees in model order, starting from
the baseline. Two walks, each the faster one for its kind of model:

- `accumulate`, every model: tree-major inside blocks of rows, so one tree's nodes stay
  in cache while a block of rows goes through it (a large forest's table does not fit
  in cache);
- `accumulate_rows`, a boosted model with one raw score a row, no categorical split and
  a node table small enough to stay in cache (`ROW_MAJOR_BYTES`), such as XGBoost's and
  LightGBM's binary classifiers and regressors: row-major, `LANES` rows at a time. The
  rows' scores stay in L1 across the trees instead of in `out`'s rows; the rows' walks
  are independent, so the CPU overlaps their loads; and each tree is walked a fixed
  number of steps, its depth (`tree_depths`: a leaf points to itself, so a shorter
  path waits at its leaf), so the loop has no data-dependent exit to mispredict.

In both, the order of the additions into any one `out[row, column]` is the trees'
order.

Split rule of a node, as scikit-learn's `_apply_dense` (sklearn/tree/_tree.pyx) and
`_predict_one_from_raw_data` (sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx):
NaN goes the node's missing-value direction; a categorical node (`cat_node >= 0`) sends a
category in its left bitset left, another known category right, and a negative or
unknown one the missing-value direction; a numeric node goes left when x <= threshold.
Inputs are rounded to float32 where the library rounds them (`inputs`).

XGBoost and LightGBM (`xgboost_trees`, `lightgbm_trees`) use the same loop with two
flags in `inputs` and one optional array: SUM32 rounds each sum to float32 (XGBoost adds
its leaves in float32), TINY_ZERO reads |x| <= 1e-35 as 0.0 (LightGBM's row reader drops
such values), and `zero_missing` sends 0.0 the missing-value direction at the nodes of
LightGBM's missing type Zero. XGBoost's `x < condition` is stored as `x <= threshold`
with the float32 below the condition, and LightGBM's categorical rule is met by its
inputs being truncated first and its features having no known categories.

Safety: the kernel does no bounds checks; `trees.TreeEnsemble` checks every index of
the arrays once, when a slot is opened, and the caller checks the rows' width.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def _scipy_hidden() -> Iterator[None]:
    """numba imports scipy where it can: its __init__ to check scipy's version and, while
    compiling, numba.np.linalg for scipy's BLAS (`ensure_blas`); both carry on without
    it. The kernel needs no BLAS and a worker never needs scipy, so it is hidden while
    numba loads and compiles, unless something in this process imported it already."""
    if "scipy" in sys.modules:
        yield
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["scipy"]


with _scipy_hidden():
    import numba

_types = numba.types

# Rows that go through one tree before the next: a tree's nodes stay in L1 while the
# block's rows (32 KB-1 MB) stay in L2; measured faster than 64 or 256 on 300 trees.
BLOCK = 4096
BITSET_WORDS = 8  # 256 categories a bitset row, as scikit-learn's HGB bitsets
# Rows `accumulate_rows` walks at once: their walks are independent, so the CPU overlaps
# their loads. Measured on 10 000 rows: 16 about 1.4x faster than 4 on LightGBM's
# 31-leaf trees, no faster at 32.
LANES = 16
# Node tables up to this size take the row-major walk: about an L2 cache, so every
# tree stays cached while a row goes through all of them. Measured on 10 000
# breast-cancer rows in one process: XGBoost's 300 trees of depth 6 (45 kB) 3.4x
# faster than `accumulate`, LightGBM's 300 trees of 31 leaves (350 kB) 2.4x; a large
# forest (100 MB) is many times slower row-major.
ROW_MAJOR_BYTES = 1 << 20


def _ro(dtype: Any, ndim: int) -> Any:
    return _types.Array(dtype, ndim, "C", readonly=True)


# What `accumulate` does with the inputs first (`inputs` argument, low two bits):
KEEP = 0  # compare them as they are (HistGradientBoosting*: float64, inf and NaN allowed)
FLOAT32 = 1  # round to float32, refuse NaN, inf and values too large for float32
FLOAT32_NAN = 2  # round to float32, refuse inf and values too large, allow NaN
# ...and flags added to it:
SUM32 = 4  # round every sum to float32 (XGBoost adds its leaves in float32)
TINY_ZERO = 8  # read |x| <= 1e-35 as 0.0 (LightGBM drops such values as zeros)
REFUSED = 1  # `accumulate`'s answer when FLOAT32(_NAN) refused the rows
# LightGBM's kZeroThreshold (include/LightGBM/meta.h): what it counts as zero.
ZERO_THRESHOLD = 1e-35

SIGNATURE = _types.int64(
    _ro(_types.float64, 2),   # x: rows
    _types.int64,             # inputs: KEEP, FLOAT32 or FLOAT32_NAN
    _ro(_types.intp, 2),      # children: (nodes, 2) left, right; a leaf points to itself
    _ro(_types.intp, 1),      # feature
    _ro(_types.float64, 1),   # threshold
    _ro(_types.boolean, 1),   # missing_left: where NaN (and unknown categories) go
    _ro(_types.boolean, 1),   # leaf
    _ro(_types.intp, 1),      # roots: each tree's first node
    _ro(_types.intp, 1),      # tree_column: the output column of each one-value tree
    _ro(_types.float64, 2),   # values: (nodes, width) a leaf's contribution
    _ro(_types.boolean, 1),   # zero_missing: (nodes,) or (0,): 0.0 goes where NaN goes
    _ro(_types.intp, 1),      # cat_node: bitset row of a categorical node, else -1
    _ro(_types.uint32, 2),    # left_bits: (m, 8) categories that go left
    _ro(_types.intp, 1),      # cat_feature_row: row of a feature's known categories
    _ro(_types.uint32, 2),    # known_bits: (categorical features, 8)
    _ro(_types.float64, 1),   # baseline: (columns,) raw score before the first tree
    _types.Array(_types.float64, 2, "C"),  # out: (rows, columns)
)


ROWS_SIGNATURE = _types.int64(
    _ro(_types.float64, 2),   # x: rows
    _types.int64,             # inputs, as for `accumulate`
    _ro(_types.intp, 2),      # children
    _ro(_types.intp, 1),      # feature
    _ro(_types.float64, 1),   # threshold
    _ro(_types.boolean, 1),   # missing_left
    _ro(_types.intp, 1),      # roots
    _ro(_types.intp, 1),      # depth: (trees,) steps from each root to its deepest leaf
    _ro(_types.float64, 2),   # values: (nodes, 1)
    _ro(_types.boolean, 1),   # zero_missing: (nodes,) or (0,)
    _ro(_types.float64, 1),   # baseline: (1,)
    _types.Array(_types.float64, 2, "C"),  # out: (rows, 1)
)


def _in_bitset(bits: Any, row: Any, value: Any) -> bool:
    return (bits[row, value >> np.uintp(5)] >> (value & np.uintp(31))) & 1 == 1


def _input_value(value: float, inputs: int) -> float:  # pragma: no cover (compiled)
    """One input as the model reads it: rounded to float32 (held in float64:
    scikit-learn compares the float32 input with the float64 threshold) and/or a tiny
    value zeroed, as `inputs` says. Infinity when a rounding rule refuses it: only
    those rules refuse, and under them infinity itself is refused, so it cannot be a
    value read."""
    rounding = inputs & 3
    if rounding != KEEP:
        value32 = np.float32(value)
        if np.isinf(value32) or (rounding == FLOAT32 and np.isnan(value32)):
            return np.inf
        value = np.float64(value32)
    if inputs & TINY_ZERO and abs(value) <= ZERO_THRESHOLD:
        value = 0.0
    return value


def _rounded(x: Any, inputs: int) -> Any:  # pragma: no cover (compiled)
    """x as the model reads it (`_input_value`), in a new array; None when `inputs`
    refuses a value."""
    refusing = inputs & 3 != KEEP
    rounded = np.empty(x.shape, dtype=np.float64)
    flat = rounded.ravel()
    for j, value in enumerate(x.ravel()):
        flat[j] = _input_value(value, inputs)
        if refusing and np.isinf(flat[j]):
            return None
    return rounded


def _category_goes_left(v: float, node: Any, f: Any, missing_left: Any, cat_node: Any,
                        left_bits: Any, cat_feature_row: Any,
                        known_bits: Any) -> bool:  # pragma: no cover (compiled)
    if v < 0.0 or v >= 256.0:
        return bool(missing_left[node])
    c = np.uintp(v)
    if _in_bitset(left_bits, np.uintp(cat_node[node]), c):
        return True
    if _in_bitset(known_bits, np.uintp(cat_feature_row[f]), c):
        return False
    return bool(missing_left[node])  # a category unseen in training


# PERF: one function on purpose. Moving the traversal into a helper, even one numba
# inlines, made this loop 3x slower (measured side by side on 10 000 iris rows).
def accumulate(  # noqa: C901 (one loop on purpose: see PERF above)
        x: Any, inputs: int, children: Any, feature: Any, threshold: Any,
        missing_left: Any, leaf: Any, roots: Any, tree_column: Any, values: Any,
        zero_missing: Any, cat_node: Any, left_bits: Any, cat_feature_row: Any,
        known_bits: Any, baseline: Any, out: Any) -> int:  # pragma: no cover (compiled)
    """out = baseline + every tree's leaf for each row of x; REFUSED (out unspecified)
    when `inputs` refuses a value, as scikit-learn's check_array(dtype=float32) would."""
    if inputs & ~SUM32 != KEEP:
        rounded = _rounded(x, inputs)
        if rounded is None:
            return REFUSED
        x = rounded
    sum32 = inputs & SUM32 != 0
    zeros = zero_missing.shape[0] > 0
    # PERF: indices are cast to unsigned, so numba emits no negative-index wraparound
    # on each array access (15-30% of the loop on forests, measured side by side).
    n_rows = x.shape[0]
    width = values.shape[1]
    one_value = width == 1 and out.shape[1] > 1
    categorical = cat_node.shape[0] > 0
    zero, one = np.uintp(0), np.uintp(1)
    for start in range(0, n_rows, BLOCK):
        stop = min(n_rows, start + BLOCK)
        for row in range(start, stop):
            out[row, :] = baseline
        for t in range(roots.shape[0]):
            root = np.uintp(roots[t])
            column = np.uintp(tree_column[t] if one_value else 0)
            for row in range(start, stop):
                i = np.uintp(row)
                node = root
                while not leaf[node]:
                    f = np.uintp(feature[node])
                    v = x[i, f]
                    if v != v or (zeros and v == 0.0 and zero_missing[node]):  # missing
                        left = missing_left[node]
                    elif categorical and cat_node[node] >= 0:
                        left = _category_goes_left(v, node, f, missing_left, cat_node,
                                                   left_bits, cat_feature_row, known_bits)
                    else:
                        left = v <= threshold[node]
                    node = np.uintp(children[node, zero] if left else children[node, one])
                if width == 1:
                    total = out[i, column] + values[node, zero]
                    # float32 + float32 computed in float64 and rounded once is the
                    # float32 sum (53 >= 2 * 24 + 2 bits: no double rounding).
                    out[i, column] = np.float32(total) if sum32 else total
                else:
                    for k in range(width):
                        out[i, np.uintp(k)] += values[node, np.uintp(k)]
    return 0


def accumulate_rows(  # noqa: C901 (one loop on purpose, as `accumulate`)
        x: Any, inputs: int, children: Any, feature: Any, threshold: Any,
        missing_left: Any, roots: Any, depth: Any, values: Any, zero_missing: Any,
        baseline: Any, out: Any) -> int:  # pragma: no cover (compiled)
    """`accumulate` for a model of one raw score a row and no categorical split,
    row-major, `LANES` rows at a time, each tree walked `depth[tree]` steps; the same
    answer to the bit (each row's trees are added in their order)."""
    refusing = inputs & 3 != KEEP
    sum32 = inputs & SUM32 != 0
    zeros = zero_missing.shape[0] > 0
    last = x.shape[0] - 1
    zero = np.uintp(0)
    # The group's rows as the model reads them: rounded here, 16 rows at a time, rather
    # than into a copy of all the rows first as `accumulate` does (in a worker, a copy
    # of 10 000 x 30 is a fresh mapping to fault in, about 1 ms: glibc's mmap threshold
    # is pinned, inferd.server.preload).
    group = np.empty((LANES, x.shape[1]), np.float64)
    node = np.empty(LANES, np.uintp)
    score = np.empty(LANES, np.float64)
    # XGBoost's sums kept in float32: the same bits as rounding each float64 sum, one
    # dependent conversion less a tree.
    score32 = np.empty(LANES, np.float32)
    for start in range(0, x.shape[0], LANES):
        for k in range(LANES):
            row = min(start + k, last)  # past the last row: the last row again
            for f in range(x.shape[1]):
                group[k, f] = _input_value(x[row, f], inputs)
                if refusing and np.isinf(group[k, f]):
                    return REFUSED
            score[k] = baseline[0]
            score32[k] = np.float32(baseline[0])
        for t in range(roots.shape[0]):
            root = np.uintp(roots[t])
            for k in range(LANES):
                node[k] = root
            for _ in range(depth[t]):
                for k in range(LANES):
                    here = node[k]
                    v = group[k, np.uintp(feature[here])]
                    if v != v or (zeros and v == 0.0 and zero_missing[here]):
                        left = missing_left[here]
                    else:
                        left = v <= threshold[here]
                    node[k] = children[here, np.uintp(0 if left else 1)]
            if sum32:
                for k in range(LANES):
                    score32[k] += np.float32(values[node[k], zero])
            else:
                for k in range(LANES):
                    score[k] += values[node[k], zero]
        for k in range(min(LANES, x.shape[0] - start)):
            out[start + k, 0] = score32[k] if sum32 else score[k]
    return 0


def tree_depths(children: Any, roots: Any, leaf: Any) -> Any:  # pragma: no cover
    """Each tree's depth: the steps from its root to its deepest leaf. The table must
    be checked first (`trees.TreeEnsemble`): children after their parent, inside
    their tree."""
    nodes = children.shape[0]
    node_depth = np.zeros(nodes, np.int32)
    for node in range(nodes):  # pre-order: a parent's depth is known before its children
        if not leaf[node]:
            node_depth[children[node, 0]] = node_depth[node] + 1
            node_depth[children[node, 1]] = node_depth[node] + 1
    depth = np.zeros(roots.shape[0], np.intp)
    for t in range(roots.shape[0]):
        end = roots[t + 1] if t + 1 < roots.shape[0] else nodes
        for node in range(roots[t], end):
            depth[t] = max(depth[t], node_depth[node])
    return depth


def expit(x: Any, out: Any) -> None:  # pragma: no cover (compiled)
    """scipy.special.expit, as scipy computes it: 1 / (1 + exp(-x)) with the C
    library's exp (scipy's xsf/log_exp.h). numpy's own vectorised exp differs from it
    in the last bit for about 2% of inputs, so it cannot stand in; numba's math.exp
    calls the same C library function, which the unit tests check bit for bit."""
    for i in range(x.shape[0]):
        out[i] = 1.0 / (1.0 + math.exp(-x[i]))


def sigmoid32(x: Any, out: Any) -> None:  # pragma: no cover (compiled)
    """XGBoost's logistic transform in float32 (`common::Sigmoid`, src/common/math.h):
    1 / (1 + expf(min(-x, 88.7))); the float32 values are held in float64 arrays."""
    one = np.float32(1.0)
    for i in range(x.shape[0]):
        exponent = min(-np.float32(x[i]), np.float32(88.7))
        out[i] = np.float64(one / (np.float32(math.exp(exponent)) + one))


def softmax32(x: Any, out: Any) -> None:  # pragma: no cover (compiled)
    """XGBoost's softmax in float32 (`common::Softmax`): expf of x - max, summed in
    double in column order, each divided by the sum rounded to float32."""
    for i in range(x.shape[0]):
        top = np.float32(x[i, 0])
        for k in range(1, x.shape[1]):
            top = max(np.float32(x[i, k]), top)
        total = 0.0
        for k in range(x.shape[1]):
            e = np.float32(math.exp(np.float32(np.float32(x[i, k]) - top)))
            out[i, k] = e
            total += np.float64(e)
        norm = np.float32(total)
        for k in range(x.shape[1]):
            out[i, k] = np.float64(np.float32(out[i, k]) / norm)


def softmax64(x: Any, out: Any) -> None:  # pragma: no cover (compiled)
    """LightGBM's softmax (`Common::Softmax`, include/LightGBM/utils/common.h): exp of
    x - max in double, summed in column order, each divided by the sum."""
    for i in range(x.shape[0]):
        top = x[i, 0]
        for k in range(1, x.shape[1]):
            top = max(x[i, k], top)
        total = 0.0
        for k in range(x.shape[1]):
            out[i, k] = math.exp(x[i, k] - top)
            total += out[i, k]
        for k in range(x.shape[1]):
            out[i, k] /= total


def _compiled(fn: Any, signature: Any = None, **options: Any) -> Any:
    """`fn` compiled by numba, with numba's on-disk cache where it has a writable place
    for it (`__pycache__` beside this file, else the user's cache directory, or
    NUMBA_CACHE_DIR): a gunicorn start then loads the machine code in about 0.1 s
    instead of compiling it for about 1 s (4 s on a loaded 2-core machine). numba keys
    the cache by this file's timestamp, its own version and the CPU, writes it with an
    atomic rename, and recompiles on any mismatch. Without a writable place the kernel
    is compiled at every start."""
    try:
        return numba.njit(signature, nogil=True, cache=True, **options)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(signature, nogil=True, **options)(fn)


# Compiled here, eagerly, for their one signature each: at import, in the master.
with _scipy_hidden():
    _in_bitset = _compiled(_in_bitset, inline="always")
    _input_value = _compiled(_input_value, inline="always")
    _rounded = _compiled(_rounded)
    _category_goes_left = _compiled(_category_goes_left)
    accumulate = _compiled(accumulate, SIGNATURE)
    accumulate_rows = _compiled(accumulate_rows, ROWS_SIGNATURE)
    tree_depths = _compiled(tree_depths, _types.Array(_types.intp, 1, "C")(
        _ro(_types.intp, 2), _ro(_types.intp, 1), _ro(_types.boolean, 1)))
    expit = _compiled(expit, _types.void(_ro(_types.float64, 1),
                                         _types.Array(_types.float64, 1, "C")))
    sigmoid32 = _compiled(sigmoid32, _types.void(_ro(_types.float64, 1),
                                                 _types.Array(_types.float64, 1, "C")))
    softmax32 = _compiled(softmax32, _types.void(_ro(_types.float64, 2),
                                                 _types.Array(_types.float64, 2, "C")))
    softmax64 = _compiled(softmax64, _types.void(_ro(_types.float64, 2),
                                                 _types.Array(_types.float64, 2, "C")))


def takes_exactly(signature: Any, table: tuple[Any, ...]) -> bool:
    """Whether `table` is exactly the arguments of a walk's `signature` between the
    rows with their `inputs` rule and `out`: each one's dtype, dimensions, C order, and
    the machine's byte order. What an `unchecked` entry point reads without looking;
    numba's dispatcher refuses anything else, and a slot's header only pins an array's
    dtype to the one its file has."""
    from numba.np.numpy_support import as_dtype

    expected = signature.args[2:-1]
    return len(expected) == len(table) and all(
        isinstance(arr, np.ndarray) and arr.dtype == as_dtype(kind.dtype)
        and arr.dtype.isnative and arr.ndim == kind.ndim and arr.flags.c_contiguous
        for arr, kind in zip(table, expected, strict=True))


def unchecked(dispatcher: Any) -> Any:
    """The machine code of `dispatcher`'s one compiled signature, called without numba's
    dispatch; the dispatcher itself if it has not exactly one.

    PERF: on every call a dispatcher types each argument to pick an overload (about
    0.2 us for `expit`'s two, 0.7 us for `accumulate`'s seventeen: most of the Python
    cost of a one-row prediction around the walk), and each function here has one
    eagerly compiled signature, so there is nothing to pick. The entry point unboxes
    arrays without checking their dtype, dimensions or order: callers pass exactly the
    signature's (rows made C-contiguous float64 and their width checked, outputs from
    `np.empty`, tables checked with `takes_exactly` when the slot was opened)."""
    overloads = list(dispatcher.overloads.values())
    entry = getattr(overloads[0], "entry_point", None) if len(overloads) == 1 else None
    return entry if callable(entry) else dispatcher


# The fixed-signature calls of the request path (`trees`, `outputs`, `library_outputs`).
accumulate_unchecked = unchecked(accumulate)
accumulate_rows_unchecked = unchecked(accumulate_rows)
expit_unchecked = unchecked(expit)
sigmoid32_unchecked = unchecked(sigmoid32)


def _warm_up() -> None:
    """Call `accumulate` and the transforms once, on a one-leaf tree, with the argument kinds a
    worker passes (writable rows and default arrays, read-only mapped ones), here in the
    master. numba's first call of a dispatcher does the rest of its setup in Python: its
    `typeof` imports numpy.ma (numpy 2 loads it lazily) and each writable-to-read-only
    conversion is registered. Done in every worker, that wrote about 7 MB of private
    pages each on its first prediction (smaps' Private_Dirty, HistGradientBoosting
    model of the benchmark suite); after this, about 0.5 MB."""
    def arrays(writable: bool) -> list[np.ndarray]:
        made = [np.zeros((1, 1)), np.zeros((1, 2), np.intp), np.zeros(1, np.intp),
                np.zeros(1), np.zeros(1, np.bool_), np.ones(1, np.bool_),
                np.zeros(1, np.intp), np.zeros(1, np.intp), np.zeros((1, 1)),
                np.zeros(0, np.bool_), np.zeros(0, np.intp),
                np.zeros((0, BITSET_WORDS), np.uint32),
                np.zeros(0, np.intp), np.zeros((0, BITSET_WORDS), np.uint32), np.zeros(1)]
        for array in made:
            array.setflags(write=writable)
        return made

    for writable in (True, False):
        x, *table = arrays(writable)
        args: list[Any] = [x, KEEP, *table, np.empty((1, 1))]
        accumulate(*args)
        children, feature, threshold, missing_left, leaf, roots = table[:6]
        depth = tree_depths(children, roots, leaf)
        depth.setflags(write=writable)
        accumulate_rows(x, KEEP, children, feature, threshold, missing_left, roots, depth,
                        table[7], table[8], table[-1], np.empty((1, 1)))
        expit(table[-1], np.empty(1))  # the baseline's array: float64 (1,)
        sigmoid32(table[-1], np.empty(1))
        softmax32(table[7], np.empty((1, 1)))  # the values' array: float64 (1, 1)
        softmax64(table[7], np.empty((1, 1)))


with _scipy_hidden():
    _warm_up()


def release_compiler_pages() -> int:
    """Drop this process's mapped pages of LLVM's library (llvmlite), once the kernel is
    compiled; return the kB released. Called in the gunicorn master before it forks.

    Compiling (or loading numba's cache) touches about 70 MB of libllvmlite.so's code,
    which every worker would then map and which counts in the server's memory, although
    serving never runs it: the kernel is machine code in its own pages. Only mappings
    that cannot have been written to are dropped (read-only or executable, with no
    anonymous, copy-on-write page: `Anonymous: 0 kB` in smaps), so MADV_DONTNEED loses
    nothing: a page used again (a later compile) is read back from the file.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, end, rss_kb in _clean_mappings("libllvmlite"):
        if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += rss_kb
    return released


_MADV_DONTNEED = 4  # <sys/mman.h> on Linux


def _clean_mappings(library: str) -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of the never-written mappings of `library`."""
    mappings: list[dict[str, Any]] = []
    try:
        with open("/proc/self/smaps") as fh:
            for line in fh:
                header = _MAPPING.match(line)
                if header:
                    mappings.append({"start": int(header[1], 16), "end": int(header[2], 16),
                                     "ok": "w" not in header[3]
                                     and library in header[4].rsplit("/", 1)[-1]})
                elif mappings and line.startswith(("Rss:", "Anonymous:")):
                    key, value = line.split()[:2]
                    mappings[-1][key[:-1]] = int(value)
    except OSError:
        return []
    return [(m["start"], m["end"], m.get("Rss", 0)) for m in mappings
            if m["ok"] and m.get("Anonymous") == 0]


# "start-end perms offset dev inode [path]", the first line of each mapping in smaps
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
