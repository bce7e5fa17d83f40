"""MLflow's scoring protocol on inferd against `mlflow models serve`, in one run.

    python -m benchmarks.invocations [--seconds 10] [--out benchmarks/results]

Two MLflow models, each served by inferd and by `mlflow models serve --env-manager
local`, 2 workers each, sent the same one-row `dataframe_split` request:

- an iris random forest (100 trees) logged with a named-column signature: inferd's
  `/invocations` against its own `/predict/` on the same server (server CPU per request;
  the issue's target is at most 1.15x), and against `mlflow models serve` (req/s; target
  at least 40x);
- a pipeline whose ColumnTransformer one-hot encodes a string column (served by
  scikit-learn in inferd's workers, the fallback form): inferd against
  `mlflow models serve` (req/s; target at least 3x).

Every answer is first checked equal between the two servers. The `/predict/` and
`/invocations` runs alternate (twice each) on one server, so a neighbour's load on this
shared machine falls on both. Writes `<out>/invocations.json` and prints a Markdown
table. Never run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import requests

from benchmarks import tools
from benchmarks.models import prepare_scoring
from benchmarks.servers import Server, running, start_inferd, start_mlflow
from benchmarks.suite import machine

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"]
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
TARGETS = {"iris_invocations_cpu_vs_predict": ("lower", 1.15),
           "iris_invocations_rps_vs_mlflow": ("higher", 40.0),
           "pipeline_invocations_rps_vs_mlflow": ("higher", 3.0)}


def split(columns: list[str], row: list[Any]) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": columns, "data": [row]}})


class Run:
    def __init__(self, seconds: float, connections: int, work: Path) -> None:
        self.seconds = seconds
        self.connections = connections
        self.work = work

    def load(self, server: Server, url: str, body: bytes) -> dict[str, Any]:
        """wrk on `url` of `server`, with the server tree's CPU per request."""
        tools.run_wrk(url, body, 1.0, self.connections)  # warm-up
        before = tools.cpu_seconds(server.pid)
        result = tools.run_wrk(url, body, self.seconds, self.connections)
        figures = result.as_dict()
        cpu = tools.cpu_seconds(server.pid) - before
        figures["server_cpu_ms_per_request"] = 1000 * cpu / max(result.requests, 1)
        if result.non_2xx or result.socket_errors:
            raise RuntimeError(f"{server.name} {url}: {result.non_2xx} non-2xx answers, "
                               f"{result.socket_errors} socket errors")
        return figures

    def answer(self, server: Server, body: bytes) -> Any:
        resp = requests.post(f"{server.url}/invocations", data=body, timeout=60,
                             headers={"Content-Type": "application/json"})
        if resp.status_code != 200:
            raise RuntimeError(f"{server.name} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def inferd(self, name: str, model_dir: Path) -> Server:
        return start_inferd(model_dir, self.work / "state" / name, 2,
                            self.work / "logs" / f"inferd-{name}.log")

    def mlflow(self, name: str, model_dir: Path) -> Server:
        return start_mlflow(model_dir, 2, self.work / "logs" / f"mlflow-{name}.log")

    def iris(self, model_dir: Path) -> dict[str, Any]:
        invocations = split(IRIS_COLUMNS, IRIS_ROW)
        predict = orjson.dumps({"features": [IRIS_ROW]})
        figures: dict[str, Any] = {"predict": [], "invocations": []}
        print("[iris] inferd /predict/ and /invocations ...", flush=True)
        with running(self.inferd("iris", model_dir)) as server:
            ours = self.answer(server, invocations)
            form = requests.get(server.url + "/health/", timeout=10).json()["model"]["form"]
            for _ in range(2):
                figures["predict"].append(self.load(server, server.predict_url, predict))
                figures["invocations"].append(
                    self.load(server, f"{server.url}/invocations", invocations))
        print("[iris] mlflow models serve /invocations ...", flush=True)
        with running(self.mlflow("iris", model_dir)) as server:
            if self.answer(server, invocations) != ours:
                raise RuntimeError("inferd's answer on the iris forest differs from MLflow's")
            figures["mlflow"] = self.load(server, server.predict_url, invocations)
        figures["inferd_form"] = form
        return figures

    def pipeline(self, model_dir: Path) -> dict[str, Any]:
        body = split(["color", "size"], ["red", 0.5])
        figures: dict[str, Any] = {}
        print("[pipeline] inferd /invocations ...", flush=True)
        with running(self.inferd("pipeline", model_dir)) as server:
            ours = self.answer(server, body)
            figures["inferd_form"] = requests.get(server.url + "/health/",
                                                  timeout=10).json()["model"]["form"]
            figures["invocations"] = self.load(server, f"{server.url}/invocations", body)
        print("[pipeline] mlflow models serve /invocations ...", flush=True)
        with running(self.mlflow("pipeline", model_dir)) as server:
            if self.answer(server, body) != ours:
                raise RuntimeError("inferd's answer on the pipeline differs from MLflow's")
            figures["mlflow"] = self.load(server, server.predict_url, body)
        return figures


def _sum(runs: list[dict[str, Any]], key: str) -> float:
    return float(sum(run[key] for run in runs))


def ratios(iris: dict[str, Any], pipeline: dict[str, Any]) -> dict[str, float]:
    # CPU per request over both alternating runs, weighted by their request counts.
    def cpu_per_request(runs: list[dict[str, Any]]) -> float:
        return sum(r["server_cpu_ms_per_request"] * r["requests"] for r in runs) / _sum(
            runs, "requests")

    def rps(runs: list[dict[str, Any]]) -> float:
        return _sum(runs, "requests") / _sum(runs, "seconds")

    return {
        "iris_invocations_cpu_vs_predict": cpu_per_request(iris["invocations"])
        / cpu_per_request(iris["predict"]),
        "iris_invocations_rps_vs_mlflow": rps(iris["invocations"]) / iris["mlflow"]["rps"],
        "pipeline_invocations_rps_vs_mlflow": pipeline["invocations"]["rps"]
        / pipeline["mlflow"]["rps"],
    }


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# /invocations against mlflow models serve ({m['date']})", "",
             f"{m['cpus']} CPUs, load average at start {m['load_average_at_start'][0]:.2f}; "
             f"{doc['seconds_per_run']} s a wrk run, {doc['connections']} connections, "
             "2 workers each; one row, `dataframe_split`.", "",
             "| figure | value | target | met |", "|---|---|---|---|"]
    for name, value in doc["ratios"].items():
        better, target = TARGETS[name]
        met = value <= target if better == "lower" else value >= target
        sign = "<=" if better == "lower" else ">="
        lines.append(f"| {name} | {value:.3g} | {sign} {target:g} | "
                     f"{'yes' if met else '**no**'} |")
    lines += ["", "| model | server | route | req/s | p50 ms | p99 ms | server CPU ms/req |",
              "|---|---|---|---|---|---|---|"]

    def row(model: str, server: str, route: str, f: dict[str, Any]) -> str:
        return (f"| {model} | {server} | {route} | {f['rps']:.0f} | {f['p50_ms']:.2f} | "
                f"{f['p99_ms']:.2f} | {f['server_cpu_ms_per_request']:.3f} |")

    iris, pipeline = doc["results"]["iris"], doc["results"]["pipeline"]
    for i, run in enumerate(iris["predict"]):
        lines.append(row("iris forest", f"inferd ({iris['inferd_form']})",
                         f"/predict/ (run {i + 1})", run))
    for i, run in enumerate(iris["invocations"]):
        lines.append(row("iris forest", f"inferd ({iris['inferd_form']})",
                         f"/invocations (run {i + 1})", run))
    lines.append(row("iris forest", "mlflow models serve", "/invocations", iris["mlflow"]))
    lines.append(row("pipeline", f"inferd ({pipeline['inferd_form']})", "/invocations",
                     pipeline["invocations"]))
    lines.append(row("pipeline", "mlflow models serve", "/invocations", pipeline["mlflow"]))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="a wrk run's length")
    parser.add_argument("--connections", type=int, default=8)
    tools.add_output_arguments(parser)
    args = parser.parse_args()
    tools.require_wrk()
    at_start = machine()  # before the run: its load average is the one that matters
    started = time.monotonic()
    models = prepare_scoring(args.cache)
    work = Path(tempfile.mkdtemp(prefix="inferd-invocations-"))
    print(f"work directory (logs): {work}", flush=True)
    run = Run(args.seconds, args.connections, work)
    results = {"iris": run.iris(models.iris_named_dir),
               "pipeline": run.pipeline(models.pipeline_dir)}
    doc = {"machine": at_start, "seconds_per_run": args.seconds,
           "connections": args.connections, "results": results,
           "ratios": ratios(results["iris"], results["pipeline"]),
           "seconds": round(time.monotonic() - started)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "invocations.json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    (args.out / "invocations.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
