"""Which engine answers a request on a compiled tree model: numpy or scikit-learn.

Measured with `python -m benchmarks.batch_paths` (docs/performance.md): the
vectorised numpy traversal wins by 10-50x for a handful of rows, because scikit-learn
pays about 0.1-0.3 ms of joblib and validation overhead per tree whatever the batch;
but per node visited numpy costs several times scikit-learn's compiled loop, so on
large batches it loses (2-4x at 10 000 rows). The work of a batch is about
rows x mean leaf depth x trees for both, so the crossover is a number of
rows x mean leaf depth. Over three runs numpy was ahead at 2 400 (deep extra trees,
100 rows) and, within the noise, level at 3 900 (iris forest, 1 000 rows: 30% ahead in
one run, 20% behind in another) and at 7 200 (extra trees, 300 rows); so the switch is
at 4 000, the side where no batch is slower than scikit-learn.

Above `LARGE_BATCH_WORK`, this worker answers with the slot's own scikit-learn
estimator. It is loaded on first need, in a background thread, with the same trust
rules as any slot load; until it is ready, large batches keep going to numpy, so no
request waits for the load. The price is that worker's import of scikit-learn and its
private copy of the model: only workers that see large batches pay it, and
INFERD_SKLEARN_LARGE_BATCHES=false turns it off.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import InferdError
from inferd.model.compiled.compile import CompiledModel

log = logging.getLogger("inferd.batch")

LARGE_BATCH_WORK = 4000.0  # rows x mean leaf depth where scikit-learn starts to win


class BatchRouter:
    """A compiled model plus, for tree models, scikit-learn for large batches.

    One per loaded slot in a worker, shared by its threads; `predict` never blocks on
    the scikit-learn load.
    """

    def __init__(self, compiled: CompiledModel, model_dir: Path, allow_pickle: bool,
                 enabled: bool = True, threshold: float = LARGE_BATCH_WORK) -> None:
        self.compiled = compiled
        self.model_dir = model_dir
        self.allow_pickle = allow_pickle
        trees = compiled.trees
        self.rows_limit = (threshold / max(trees.mean_leaf_depth, 1.0)
                           if enabled and trees is not None else float("inf"))
        self.n_features = compiled.n_features
        self._reference: Any = None
        self._loading = threading.Lock()
        self._started = False

    @property
    def engine_for_large_batches(self) -> str:
        if self.rows_limit == float("inf"):
            return "numpy"
        return "scikit-learn" if self._reference is not None else "numpy (scikit-learn idle)"

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) <= self.rows_limit:
            return self.compiled.predict(rows)
        reference = self._reference
        if reference is None:
            self._load_in_background()
            return self.compiled.predict(rows)
        return np.asarray(reference.predict(rows))

    def _load_in_background(self) -> None:
        with self._loading:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="inferd-sklearn-load", daemon=True).start()

    def _load(self) -> None:
        from inferd.model.artifact import load_model_dir

        try:
            _, estimator = load_model_dir(self.model_dir, self.allow_pickle)
        except InferdError as exc:
            self.rows_limit = float("inf")  # numpy answers everything; it is correct
            log.warning("Could not load scikit-learn for large batches; numpy answers them",
                        extra={"event": "large_batch_engine", "error": str(exc)})
            return
        self._reference = estimator
        log.info("scikit-learn loaded for large batches",
                 extra={"event": "large_batch_engine", "rows_above": round(self.rows_limit)})
