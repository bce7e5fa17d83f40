"""inferd's benchmark suite: inferd against `mlflow models serve` and a bare Falcon
floor, in one run, on loopback, with wrk.

    python -m benchmarks.suite [--quick] [--check] [--out benchmarks/results]

Scenarios (every figure is also given as a ratio to `mlflow models serve` on the same
model with the same worker count, and to the floor):

- throughput: single row and 100 rows on the iris forest (100 trees), 2 workers;
- large forest: single row on extra trees of >= 100 MB pickled, 2 workers;
- gradient boosting: single row on a HistGradientBoostingClassifier (300 iterations,
  breast-cancer data, an MLflow model), 2 workers; the same on XGBoost (300 trees of
  depth 6) and LightGBM (300 trees of 31 leaves), each an MLflow model of its own
  flavor (`xgb`, `lgb`), with summed PSS by workers;
- big batches: 10 000 rows in one request, as `/predict/` JSON and as v2 binary, on the
  iris forest and a 300-tree forest (breast cancer), against scikit-learn's own
  single-thread predict_proba in-process on the same rows; on the XGBoost and LightGBM
  models against the library's own single-thread predict; and the kernel against
  scikit-learn in-process (`benchmarks.kernel`);
- memory: summed PSS (smaps_rollup) of each server's process tree, iris with 2
  workers, and inferd on the large forest and on the boosted model with 1, 2 and 4
  workers;
- reload: a reload every second under single-row load: failed requests, p99 against
  the steady p99, and how long after each 200 answer the last worker loaded the slot.

`--only xgb,lgb` runs some scenarios only (iris, large, hgb, xgb, lgb, big, reload);
with `--write-baseline` their ratios are merged into the baseline, the others kept.

Writes `<out>/report.json` and `<out>/report.md`. `--check` compares the ratios with
`benchmarks/baseline.json` and exits 1 on a regression beyond `--tolerance`. The load
generator shares the machine's cores with the servers: read ratios, not absolutes.
Never run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests

from benchmarks import report, tools
from benchmarks.models import Models, prepare
from benchmarks.servers import (
    INFERD_WORKER,
    Server,
    running,
    start_floor,
    start_inferd,
    start_mlflow,
)
from benchmarks.v2_client import V2_MODEL_NAME, v2_binary, v2_binary_output

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
BREAST_CANCER_ROW = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419,
                     0.07871, 1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373,
                     0.01587, 0.03003, 0.006193, 25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656,
                     0.7119, 0.2654, 0.4601, 0.1189]
BASELINE = Path(__file__).with_name("baseline.json")


class Suite:
    def __init__(self, args: argparse.Namespace, models: Models, work: Path) -> None:
        self.args = args
        self.models = models
        self.work = work
        self.seconds = 4.0 if args.quick else 10.0
        self.connections = args.connections
        self.results: dict[str, Any] = {}

    # -- helpers ------------------------------------------------------------------------

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def load(self, server: Server, body: bytes, seconds: float | None = None) -> dict[str, Any]:
        """wrk against `server`, plus the server tree's CPU per request and its PSS."""
        tools.run_wrk(server.predict_url, body, 1.0, self.connections)  # warm-up
        cpu_before = tools.cpu_seconds(server.pid)
        result = tools.run_wrk(server.predict_url, body, seconds or self.seconds,
                               self.connections)
        cpu = tools.cpu_seconds(server.pid) - cpu_before
        out = result.as_dict()
        out["server_cpu_ms_per_request"] = 1000 * cpu / max(result.requests, 1)
        out["pss_mb"] = tools.pss_mb(server.pid)
        return out

    @staticmethod
    def bodies(rows: int, width: int, value: list[float] | None = None) -> dict[str, bytes]:
        features = [value or [0.1 * (i + 1) for i in range(width)]] * rows
        return {"inferd": orjson.dumps({"features": features}),
                "mlflow": orjson.dumps({"inputs": features})}

    def check_answers(self, server: Server, body: bytes) -> None:
        resp = requests.post(server.predict_url, data=body, timeout=60,
                             headers={"Content-Type": "application/json"})
        if resp.status_code != 200:
            raise RuntimeError(f"{server.name} answered {resp.status_code}: {resp.text[:300]}")

    def inferd_state(self, name: str) -> Path:
        # One state directory per model: the published (compiled) slot is reused by
        # every start, as a restarted production server would.
        return self.work / "state" / name

    # -- scenarios ----------------------------------------------------------------------

    def throughput(self, name: str, model_dir: Path, width: int, row_counts: list[int],
                   value: list[float] | None = None) -> None:
        workers = 2
        per_server: dict[str, dict[str, Any]] = {}
        starters = {
            "floor": lambda: start_floor(workers, self.log(f"floor-{name}"),
                                         self.args.worker_class),
            "inferd": lambda: start_inferd(model_dir, self.inferd_state(name), workers,
                                           self.log(f"inferd-{name}"),
                                           self.args.worker_class),
            "mlflow": lambda: start_mlflow(model_dir, workers, self.log(f"mlflow-{name}")),
        }
        for server_name, start in starters.items():
            print(f"[{name}] {server_name} ...", flush=True)
            with running(start()) as server:
                if server_name == "inferd":
                    health = requests.get(server.url + "/health/", timeout=10).json()
                    self.results.setdefault("forms", {})[name] = health["model"]["form"]
                figures: dict[str, Any] = {}
                for rows in row_counts:
                    body = self.bodies(rows, width, value)[
                        "mlflow" if server_name == "mlflow" else "inferd"]
                    self.check_answers(server, body)
                    figures[f"{rows}_rows"] = self.load(server, body)
                figures["pss_mb_after_load"] = tools.pss_mb(server.pid)
                per_server[server_name] = figures
        self.results[f"throughput_{name}"] = per_server

    def memory_by_workers(self, name: str, model: Path, width: int) -> None:
        figures, anonymous = {}, {}
        body = self.bodies(1, width)["inferd"]
        for workers in (1, 2, 4):
            print(f"[memory] inferd, {name}, {workers} worker(s) ...", flush=True)
            with running(start_inferd(model, self.inferd_state(name),
                                      workers, self.log(f"inferd-{name}-w{workers}"),
                                      self.args.worker_class)) as server:
                tools.run_wrk(server.predict_url, body, 2.0, self.connections)
                figures[str(workers)] = tools.pss_mb(server.pid)
                anonymous[str(workers)] = tools.pss_mb(server.pid, "Pss_Anon")
        self.results[f"memory_{name}_inferd_pss_mb"] = figures
        self.results[f"memory_{name}_inferd_pss_anon_mb"] = anonymous

    def big_batches(self, rows: int = 10_000, repeat: int = 5,
                    names: tuple[str, ...] = ("iris", "bc_rf300")) -> None:
        import joblib
        import mlflow.sklearn
        import numpy as np
        from sklearn.datasets import load_breast_cancer, load_iris
        from threadpoolctl import threadpool_limits

        from benchmarks import kernel

        if "iris" in names:
            print("[big batches] the kernel against scikit-learn in-process ...", flush=True)
            self.results["kernel_in_process"] = kernel.figures()
        rng = np.random.default_rng(0)
        bc = load_breast_cancer().data
        cases = {"iris": (self.models.iris_dir, load_iris().data,
                          lambda: mlflow.sklearn.load_model(str(self.models.iris_dir)),
                          lambda e, x: e.predict_proba(x)),
                 "bc_rf300": (self.models.bc_rf300, bc,
                              lambda: joblib.load(self.models.bc_rf300),
                              lambda e, x: e.predict_proba(x)),
                 # The libraries' own predict, one thread (inferd's /predict/ answers
                 # predict's labels too).
                 "bc_xgb300": (self.models.bc_xgb_dir, bc,
                               lambda: _load_xgboost(self.models.bc_xgb_dir),
                               lambda e, x: e.predict(x)),
                 "bc_lgb300": (self.models.bc_lgb_dir, bc,
                               lambda: _load_lightgbm(self.models.bc_lgb_dir),
                               lambda e, x: e.predict(x, num_threads=1))}
        for name in names:
            path, data, load, theirs_fn = cases[name]
            print(f"[big batches] {name}, {rows} rows in one request ...", flush=True)
            x = data[rng.integers(0, len(data), rows)] * rng.uniform(0.95, 1.05,
                                                                     (rows, data.shape[1]))
            estimator = load()
            with threadpool_limits(1):
                theirs = tools.best_of(lambda: theirs_fn(estimator, x), repeat)  # noqa: B023
            body = orjson.dumps({"features": x.tolist()})
            binary, headers = v2_binary(x)  # both bodies made before the clock starts
            with running(start_inferd(path, self.inferd_state(f"big-{name}"), 2,
                                      self.log(f"inferd-big-{name}"), self.args.worker_class,
                                      INFERD_MAX_BODY_BYTES=str(2 * len(body)))) as server, \
                    requests.Session() as session:
                infer = f"{server.url}/v2/models/{V2_MODEL_NAME}/infer"
                labels = estimator.predict(x)
                answer = session.post(server.predict_url, data=body, timeout=120).json()
                answer_v2 = session.post(infer, data=binary, headers=headers, timeout=120)
                if (answer["predictions"] != labels.tolist()
                        or not np.array_equal(v2_binary_output(answer_v2), labels)):
                    raise RuntimeError(f"inferd's answer on {name} differs from the model's")
                ours = tools.best_of(lambda: session.post(  # noqa: B023
                    server.predict_url, data=body, timeout=120), repeat)  # noqa: B023
                ours_v2 = tools.best_of(lambda: session.post(  # noqa: B023
                    infer, data=binary, headers=headers, timeout=120), repeat)  # noqa: B023
            self.results[f"big_batch_{name}"] = {"rows": rows, "body_mb": len(body) / 2**20,
                                                 "inferd_request_ms": ours * 1e3,
                                                 "inferd_v2_binary_ms": ours_v2 * 1e3,
                                                 "binary_body_mb": len(binary) / 2**20,
                                                 "sklearn_in_process_ms": theirs * 1e3}

    def reload_under_load(self) -> None:
        print("[reload] inferd, iris, a reload every second under load ...", flush=True)
        model_path = self.work / "reload" / "model.joblib"
        model_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.models.iris_a, model_path)
        body = self.bodies(1, 4, IRIS_ROW)["inferd"]
        state = self.inferd_state("reload")
        with running(start_inferd(model_path, state, 2, self.log("inferd-reload"),
                                  self.args.worker_class)) as server:
            steady = self.load(server, body)
            answers: list[tuple[float, int]] = []
            stop = threading.Event()

            def reload_every_second() -> None:
                sources = [self.models.iris_b, self.models.iris_a]
                count = 0
                while not stop.wait(1.0):
                    tmp = model_path.with_suffix(".tmp")
                    shutil.copyfile(sources[count % 2], tmp)
                    tmp.replace(model_path)
                    count += 1
                    resp = requests.post(server.url + "/admin/reload", timeout=120)
                    if resp.status_code == 200 and resp.json()["status"] == "reloaded":
                        generation = int(os.readlink(state / "current").rsplit("/", 1)[1])
                        answers.append((time.time(), generation))

            thread = threading.Thread(target=reload_every_second, daemon=True)
            thread.start()
            under_reload = tools.run_wrk(server.predict_url, body, self.seconds * 1.5,
                                         self.connections).as_dict()
            stop.set()
            thread.join(180)
            time.sleep(1.5)  # so the last reload's slot loads are in the log
            under_reload["reloads"] = len(answers)
            under_reload["max_worker_lag_s"] = report.worker_lag(server.log, answers)
        self.results["reload"] = {"steady": steady, "under_reload": under_reload}

    def run(self) -> dict[str, Any]:
        only = set(self.args.only.split(",")) if self.args.only else None
        if only is not None:
            return self.run_only(only)
        self.throughput("iris", self.models.iris_dir, 4, [1, 100], IRIS_ROW)
        if self.args.quick:
            print("[large] --quick: inferd only, no mlflow or floor run", flush=True)
            with running(start_inferd(self.models.large_dir, self.inferd_state("large"), 2,
                                      self.log("inferd-large"),
                                      self.args.worker_class)) as server:
                body = self.bodies(1, 20)["inferd"]
                self.results["throughput_large"] = {"inferd": {"1_rows": self.load(server,
                                                                                   body)}}
        else:
            self.throughput("large", self.models.large_dir, 20, [1])
        self.memory_by_workers("large", self.models.large_dir, 20)
        self.throughput("hgb", self.models.bc_hgb_dir, 30, [1], BREAST_CANCER_ROW)
        self.memory_by_workers("hgb", self.models.bc_hgb_dir, 30)
        self.boosters(("xgb", "lgb"))
        self.big_batches(names=("iris", "bc_rf300", "bc_xgb300", "bc_lgb300"))
        self.reload_under_load()
        return self.results

    def boosters(self, names: tuple[str, ...]) -> None:
        dirs = {"xgb": self.models.bc_xgb_dir, "lgb": self.models.bc_lgb_dir}
        for name in names:
            self.throughput(name, dirs[name], 30, [1], BREAST_CANCER_ROW)
            self.cpu_alternated(name, dirs[name], BREAST_CANCER_ROW)
            self.memory_by_workers(name, dirs[name], 30)

    def cpu_alternated(self, name: str, model_dir: Path, row: list[float],
                       rounds: int = 3) -> None:
        """Server CPU a one-row request of inferd and of the floor, both servers up and
        loaded in turn, `rounds` times (the report takes the median of the rounds'
        ratios): one 4 s window each, minutes apart, moved the ratio by 10-15% from one
        run to the next on a shared machine, as much as the floor itself moved."""
        workers, body = 2, self.bodies(1, len(row), row)["inferd"]
        print(f"[{name}] floor and inferd alternated, {rounds} rounds ...", flush=True)
        with running(start_floor(workers, self.log(f"floor-{name}-alternated"),
                                 self.args.worker_class)) as floor, \
                running(start_inferd(model_dir, self.inferd_state(name), workers,
                                     self.log(f"inferd-{name}-alternated"),
                                     self.args.worker_class)) as inferd:
            figures = [{server.name: self.load(server, body)["server_cpu_ms_per_request"]
                        for server in (floor, inferd)} for _ in range(rounds)]
        self.results[f"cpu_alternated_{name}"] = figures

    def run_only(self, only: set[str]) -> dict[str, Any]:
        """Some scenarios of `run`, in its order."""
        if "iris" in only:
            self.throughput("iris", self.models.iris_dir, 4, [1, 100], IRIS_ROW)
        if "large" in only:
            self.throughput("large", self.models.large_dir, 20, [1])
            self.memory_by_workers("large", self.models.large_dir, 20)
        if "hgb" in only:
            self.throughput("hgb", self.models.bc_hgb_dir, 30, [1], BREAST_CANCER_ROW)
            self.memory_by_workers("hgb", self.models.bc_hgb_dir, 30)
        self.boosters(tuple(n for n in ("xgb", "lgb") if n in only))
        big = tuple(n for n, key in (("iris", "big"), ("bc_rf300", "big"),
                                     ("bc_xgb300", "xgb"), ("bc_lgb300", "lgb")) if key in only)
        if big:
            self.big_batches(names=big)
        if "reload" in only:
            self.reload_under_load()
        return self.results


def _load_xgboost(model_dir: Path) -> Any:
    import mlflow.xgboost

    model = mlflow.xgboost.load_model(str(model_dir))
    model.set_params(n_jobs=1)
    return model


def _load_lightgbm(model_dir: Path) -> Any:
    import mlflow.lightgbm

    return mlflow.lightgbm.load_model(str(model_dir))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_baseline(doc: dict[str, Any], merge: bool) -> None:
    """This run's ratios as the baseline; with `merge` (an --only run), added to the
    committed ones, with the machine of the run they came from under `merged`."""
    baseline: dict[str, Any] = {"machine": doc["machine"], "ratios": doc["ratios"]}
    if merge:
        baseline = json.loads(BASELINE.read_text())
        baseline["ratios"].update(doc["ratios"])
        baseline.setdefault("merged", []).append(
            {"machine": doc["machine"], "ratios": sorted(doc["ratios"])})
    BASELINE.write_text(json.dumps(baseline, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 s wrk runs and no mlflow run on the large forest")
    parser.add_argument("--check", action="store_true",
                        help=f"compare ratios with {BASELINE.name}; exit 1 on a regression")
    parser.add_argument("--tolerance", type=float, default=0.35,
                        help="allowed relative regression of a ratio in --check (0.35)")
    tools.add_output_arguments(parser)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--worker-class", default=INFERD_WORKER,
                        choices=(INFERD_WORKER, "gthread", "sync"))
    parser.add_argument("--write-baseline", action="store_true",
                        help=f"also write the ratios to {BASELINE.name}")
    parser.add_argument("--only", default="",
                        help="comma-separated scenarios: iris, large, hgb, xgb, lgb, big, "
                             "reload (default: all)")
    args = parser.parse_args()
    tools.require_wrk()
    started = time.monotonic()
    at_start = machine()  # before the run: its load average is the one that matters
    models = prepare(args.cache)
    work = Path(tempfile.mkdtemp(prefix="inferd-suite-"))
    print(f"work directory (logs): {work}", flush=True)
    results = Suite(args, models, work).run()
    doc: dict[str, Any] = {"machine": at_start, "options": {"quick": args.quick,
                                             "worker_class": args.worker_class,
                                             "connections": args.connections},
           "large_forest_pickle_mb": round(models.large_pickle_mb, 1),
           "results": results, "ratios": report.ratios(results),
           "seconds": round(time.monotonic() - started)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(doc, indent=2))
    (args.out / "report.md").write_text(report.markdown(doc))
    print(report.markdown(doc))
    if args.write_baseline:
        write_baseline(doc, merge=bool(args.only))
    if args.check:
        return report.check(doc["ratios"], json.loads(BASELINE.read_text())["ratios"],
                            args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
