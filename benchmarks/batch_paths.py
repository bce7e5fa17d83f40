"""Where numpy stops beating scikit-learn: the measurement behind inferd.model.batch.

For an iris random forest (shallow) and extra trees on noisy labels (deep, uneven),
times scikit-learn's `predict` and the compiled numpy traversal for batches of 1 to
10 000 rows (best of `--repeat`), and prints the crossover as rows x mean leaf depth,
the unit of `inferd.model.batch.LARGE_BATCH_WORK`.

    python -m benchmarks.batch_paths [--repeat 5]

In-process, one core; read it as ratios (the machine may be shared).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inferd.model.compiled.compile import compile_into, load_compiled

BATCHES = (1, 10, 100, 300, 1000, 3000, 10000)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def models() -> dict[str, tuple[Any, Callable[[int], np.ndarray]]]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    rng = np.random.default_rng(0)
    x, y = load_iris(return_X_y=True)
    noisy_x = rng.normal(size=(8000, 20))
    return {
        "iris RandomForest(100)": (RandomForestClassifier(100, random_state=0).fit(x, y),
                                   lambda n: x[rng.integers(0, len(x), n)]),
        "noisy ExtraTrees(100), 8k rows": (
            ExtraTreesClassifier(100, random_state=0).fit(noisy_x, rng.integers(0, 3, 8000)),
            lambda n: rng.normal(size=(n, 20))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| model | rows | scikit-learn ms | numpy ms | rows x mean leaf depth |")
    print("|---|---|---|---|---|")
    for name, (estimator, sample) in models().items():
        slot = Path(tempfile.mkdtemp(prefix="inferd-batch-"))
        compile_into(slot, estimator, sample(2))
        trees = load_compiled(slot).trees
        assert trees is not None
        crossover = None
        for n in BATCHES:
            rows = sample(n)
            ours = best_of(lambda: trees.predict(rows), args.repeat)  # noqa: B023 (called now)
            theirs = best_of(lambda: estimator.predict(rows), args.repeat)  # noqa: B023
            work = n * trees.mean_leaf_depth
            if crossover is None and ours > theirs:
                crossover = work
            print(f"| {name} | {n} | {theirs * 1e3:.2f} | {ours * 1e3:.2f} | {work:.0f} |")
        print(f"\n{name}: numpy first slower at rows x mean leaf depth = "
              f"{crossover and round(crossover)} (depth {trees.depth}, "
              f"mean leaf depth {trees.mean_leaf_depth:.1f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
