"""The native tree kernel against scikit-learn, in-process, side by side.

For the iris forest (100 trees), a 300-tree forest and a 300-iteration
HistGradientBoostingClassifier on the breast-cancer data scikit-learn bundles, times
the compiled model's `predict_proba` and scikit-learn's own, single-threaded, on 1, 100
and 10 000 rows (best of `--repeat`, alternating), after checking they are equal to the
bit. Then the kernel's own cost: numba import and compile time and RSS, in a fresh
process.

    python -m benchmarks.kernel [--repeat 7]

Read it as ratios: the machine may be shared. `benchmarks.suite` runs `figures()`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inferd.model.compiled.compile import compile_into, load_compiled

BATCHES = (1, 100, 10_000)
_COST = """
import json, resource, sys, time
def rss():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
before = rss(); started = time.perf_counter()
import inferd.model.compiled.kernel
print(json.dumps({"import_compile_s": time.perf_counter() - started,
                  "rss_mb_added": rss() - before,
                  "scipy_imported": "scipy" in sys.modules}))
"""


def models() -> dict[str, tuple[Any, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    xi, yi = load_iris(return_X_y=True)
    xb, yb = load_breast_cancer(return_X_y=True)
    return {
        "iris_rf100": (RandomForestClassifier(100, random_state=0).fit(xi, yi), xi),
        "breast_cancer_rf300": (RandomForestClassifier(300, random_state=0).fit(xb, yb), xb),
        "breast_cancer_hgb300": (HistGradientBoostingClassifier(
            max_iter=300, early_stopping=False, random_state=0).fit(xb, yb), xb),
    }


def _best(fn: Callable[[], Any], times: list[float]) -> None:
    started = time.perf_counter()
    fn()
    times.append(time.perf_counter() - started)


def figures(repeat: int = 7) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    with threadpool_limits(1):  # scikit-learn single-threaded (HGB predicts with OpenMP)
        for name, (estimator, x) in models().items():
            slot = Path(tempfile.mkdtemp(prefix="inferd-kernel-"))
            assert compile_into(slot, estimator, x[:2])["form"] == "compiled"
            compiled = load_compiled(slot)
            for n in BATCHES:
                rows = x[rng.integers(0, len(x), n)] * rng.uniform(0.95, 1.05, (n, x.shape[1]))
                ours: list[float] = []
                theirs: list[float] = []
                for _ in range(repeat if n > 100 else repeat * 20):
                    _best(lambda: compiled.predict_proba(rows), ours)  # noqa: B023
                    _best(lambda: estimator.predict_proba(rows), theirs)  # noqa: B023
                assert np.array_equal(compiled.predict_proba(rows),
                                      estimator.predict_proba(rows))
                out[f"{name}_{n}_rows"] = {"inferd_ms": min(ours) * 1e3,
                                           "sklearn_ms": min(theirs) * 1e3,
                                           "speedup": min(theirs) / min(ours)}
    cost = subprocess.run([sys.executable, "-c", _COST], capture_output=True, text=True,
                          check=True)
    out["numba_cost"] = json.loads(cost.stdout)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = figures(args.repeat)
    print("| model | rows | inferd ms | scikit-learn ms | inferd faster by |")
    print("|---|---|---|---|---|")
    for key, value in results.items():
        if key != "numba_cost":
            name, rows = key.rsplit("_", 2)[0], key.rsplit("_", 2)[1]
            print(f"| {name} | {rows} | {value['inferd_ms']:.3f} | {value['sklearn_ms']:.3f} "
                  f"| {value['speedup']:.2f}x |")
    print(f"\nnumba: {json.dumps(results['numba_cost'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
