"""The Open Inference Protocol (v2), side by side in one run: inferd's `/predict/`, its
v2 JSON and v2 binary (the tensor data extension), and MLServer 1.7.1 as a peer.

    python -m benchmarks.v2 [--seconds 10] [--mlserver /work/venvs/mlserver/bin/mlserver]

MLServer goes in a virtualenv of its own, never in inferd's environment:

    python -m venv /work/venvs/mlserver
    /work/venvs/mlserver/bin/pip install mlserver==1.7.1 mlserver-sklearn==1.7.1 'uvloop<0.22'

Scenarios, 2 workers everywhere (MLServer: `parallel_workers` 2):

- one row on the suite's iris forest (100 trees, compiled): `/predict/` and v2 JSON on
  the same inferd server, two interleaved wrk rounds each, and MLServer's v2 JSON: the
  server CPU per request, req/s, and summed PSS after the load;
- 10 000 rows x 30 features (breast-cancer data) in one request, end to end from a
  Python client (encode the request, send, read and decode the answer; best of 5):
  `/predict/` JSON, v2 JSON and v2 binary, on a logistic regression (where the protocol
  is most of the cost) and on the suite's 300-tree forest (where predicting is).

Writes `<out>/v2.json` and `<out>/v2.md`. Targets (issue 13): v2 JSON one row within
1.2x of `/predict/`'s CPU per request; binary at least 3x faster than v2 JSON end to
end, and faster than `/predict/`; inferd at least 10x MLServer's req/s with at most a
quarter of its PSS. Never run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests

from benchmarks import tools
from benchmarks.models import prepare
from benchmarks.servers import Server, running, start_inferd, start_mlserver
from benchmarks.suite import IRIS_ROW, machine
from benchmarks.v2_client import V2_MODEL_NAME, v2_binary, v2_binary_output, v2_json

BIG_ROWS = 10_000
DEFAULT_MLSERVER = Path("/work/venvs/mlserver/bin/mlserver")


def measure(server: Server, url: str, body: bytes, seconds: float,
            connections: int) -> dict[str, Any]:
    """wrk against `url`, and the server tree's CPU per request."""
    tools.run_wrk(url, body, 1.0, connections)  # warm-up
    cpu_before = tools.cpu_seconds(server.pid)
    result = tools.run_wrk(url, body, seconds, connections)
    cpu = tools.cpu_seconds(server.pid) - cpu_before
    out = result.as_dict()
    out["server_cpu_ms_per_request"] = 1000 * cpu / max(result.requests, 1)
    return out


def _mean(figures: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([f[key] for f in figures]))


def one_row(args: argparse.Namespace, models: Any, work: Path) -> dict[str, Any]:
    row = np.array([IRIS_ROW])
    bodies = {"predict": orjson.dumps({"features": row.tolist()}), "v2_json": v2_json(row)}
    out: dict[str, Any] = {}
    print("[one row] inferd: /predict/ and v2 JSON, interleaved ...", flush=True)
    with running(start_inferd(models.iris_dir, work / "state-iris", 2,
                              work / "logs" / "inferd-iris.log")) as server:
        urls = {"predict": server.predict_url,
                "v2_json": f"{server.url}/v2/models/{V2_MODEL_NAME}/infer"}
        rounds: dict[str, list[dict[str, Any]]] = {"predict": [], "v2_json": []}
        for _ in range(2):
            for name in ("predict", "v2_json"):
                rounds[name].append(measure(server, urls[name], bodies[name], args.seconds,
                                            args.connections))
        for name, figures in rounds.items():
            out[f"inferd_{name}"] = {"rounds": figures,
                                     "rps": _mean(figures, "rps"),
                                     "server_cpu_ms_per_request": _mean(
                                         figures, "server_cpu_ms_per_request")}
        out["inferd_pss_mb"] = tools.pss_mb(server.pid)
    if args.mlserver.exists():
        print("[one row] MLServer 1.7.1, v2 JSON ...", flush=True)
        with running(start_mlserver(args.mlserver, models.iris_dir / "model.pkl", 2, work,
                                    work / "logs" / "mlserver.log")) as peer:
            figures = measure(peer, peer.predict_url, bodies["v2_json"], args.seconds,
                              args.connections)
            out["mlserver_v2_json"] = {**figures, "pss_mb": tools.pss_mb(peer.pid)}
    else:
        print(f"[one row] no MLServer at {args.mlserver}: see this module's docstring",
              flush=True)
    return out


def _timed(session: requests.Session, call: Any, repeat: int = 5) -> tuple[float, Any]:
    """Best of `repeat` end-to-end calls, in ms, and the last call's predictions."""
    result: Any = None

    def once() -> None:
        nonlocal result
        result = call(session)

    return tools.best_of(once, repeat) * 1e3, result


def big_batch(args: argparse.Namespace, name: str, model_file: Path, rows: np.ndarray,
              work: Path) -> dict[str, Any]:
    print(f"[10 000 rows] {name}: /predict/, v2 JSON, v2 binary ...", flush=True)
    body_limit = 4 * len(v2_json(rows))
    with running(start_inferd(model_file, work / f"state-{name}", 2,
                              work / "logs" / f"inferd-{name}.log",
                              INFERD_MAX_BODY_BYTES=str(body_limit),
                              INFERD_MAX_ROWS=str(len(rows)))) as server, \
            requests.Session() as session:
        infer = f"{server.url}/v2/models/{V2_MODEL_NAME}/infer"

        def predict(s: requests.Session) -> np.ndarray:
            body = orjson.dumps({"features": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
            resp = s.post(server.predict_url, data=body, timeout=120)
            return np.asarray(orjson.loads(resp.content)["predictions"])

        def json_v2(s: requests.Session) -> np.ndarray:
            resp = s.post(infer, data=v2_json(rows), timeout=120)
            return np.asarray(orjson.loads(resp.content)["outputs"][0]["data"])

        def binary_v2(s: requests.Session) -> np.ndarray:
            body, headers = v2_binary(rows)
            return v2_binary_output(s.post(infer, data=body, headers=headers, timeout=120))

        figures: dict[str, Any] = {"rows": len(rows), "features": rows.shape[1],
                                   "json_body_mb": len(v2_json(rows)) / 2**20}
        answers = {}
        for label, call in (("predict", predict), ("v2_json", json_v2),
                            ("v2_binary", binary_v2)):
            call(session)  # warm-up
            figures[f"{label}_ms"], answers[label] = _timed(session, call)
        if not (np.array_equal(answers["predict"], answers["v2_json"])
                and np.array_equal(answers["predict"], answers["v2_binary"])):
            raise RuntimeError(f"{name}: the three protocols answered differently")
    return figures


def _bc_logistic(cache: Path) -> Path:
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    path = cache / "bc-logistic.joblib"
    if not path.exists():
        x, y = load_breast_cancer(return_X_y=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(LogisticRegression(max_iter=5000).fit(x, y), path)
    return path


def verdicts(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> {value, target, met}: the issue's targets."""
    def entry(value: float | None, target: float) -> dict[str, Any]:
        return {"value": value, "target": target,
                "met": None if value is None else value >= target}

    one = r["one_row"]
    out = {"v2_json_cpu_vs_predict (<= 1.2)": {
        "value": one["inferd_v2_json"]["server_cpu_ms_per_request"]
        / one["inferd_predict"]["server_cpu_ms_per_request"], "target": 1.2}}
    out["v2_json_cpu_vs_predict (<= 1.2)"]["met"] = (
        out["v2_json_cpu_vs_predict (<= 1.2)"]["value"] <= 1.2)
    for name in ("bc_logistic", "bc_rf300"):
        big = r[f"big_{name}"]
        out[f"{name}: binary speed-up over v2 JSON (>= 3)"] = entry(
            big["v2_json_ms"] / big["v2_binary_ms"], 3.0)
        out[f"{name}: binary speed-up over /predict/ (> 1)"] = entry(
            big["predict_ms"] / big["v2_binary_ms"], 1.0)
    peer = one.get("mlserver_v2_json")
    out["req/s vs MLServer (>= 10)"] = entry(
        one["inferd_v2_json"]["rps"] / peer["rps"] if peer else None, 10.0)
    out["MLServer PSS / inferd PSS (>= 4)"] = entry(
        peer["pss_mb"] / one["inferd_pss_mb"] if peer else None, 4.0)
    return out


def markdown(doc: dict[str, Any]) -> str:
    r = doc["results"]
    one = r["one_row"]
    m = doc["machine"]
    lines = [f"# v2 benchmark, {m['date']}",
             f"{m['cpus']} CPUs, load average at start {m['load_average_at_start'][0]:.2f}, "
             f"{doc['seconds']} s", "",
             "| one row, iris forest, 2 workers | req/s | server CPU ms/request | PSS MB |",
             "|---|---|---|---|"]
    for label, key in (("inferd /predict/", "inferd_predict"),
                       ("inferd v2 JSON", "inferd_v2_json"),
                       ("MLServer 1.7.1 v2 JSON", "mlserver_v2_json")):
        if key in one:
            pss = one[key].get("pss_mb", one.get("inferd_pss_mb"))
            lines.append(f"| {label} | {one[key]['rps']:.0f} | "
                         f"{one[key]['server_cpu_ms_per_request']:.3f} | {pss:.0f} |")
    lines += ["", "| 10 000 x 30, end to end (best of 5) | /predict/ ms | v2 JSON ms | "
              "v2 binary ms |", "|---|---|---|---|"]
    for name in ("bc_logistic", "bc_rf300"):
        big = r[f"big_{name}"]
        lines.append(f"| {name} | {big['predict_ms']:.1f} | {big['v2_json_ms']:.1f} | "
                     f"{big['v2_binary_ms']:.1f} |")
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for name, v in doc["verdicts"].items():
        value = "n/a" if v["value"] is None else f"{v['value']:.2f}"
        lines.append(f"| {name} | {value} | {v['met']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run (10)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--mlserver", type=Path, default=DEFAULT_MLSERVER,
                        help=f"the mlserver command of its own virtualenv ({DEFAULT_MLSERVER})")
    tools.add_output_arguments(parser)
    args = parser.parse_args()
    tools.require_wrk()
    started = time.monotonic()
    at_start = machine()
    models = prepare(args.cache)
    work = Path(tempfile.mkdtemp(prefix="inferd-v2-"))
    print(f"work directory (logs): {work}", flush=True)
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    rng = np.random.default_rng(0)
    rows = data[rng.integers(0, len(data), BIG_ROWS)] * rng.uniform(0.95, 1.05,
                                                                    (BIG_ROWS, data.shape[1]))
    results = {"one_row": one_row(args, models, work),
               "big_bc_logistic": big_batch(args, "bc_logistic",
                                            _bc_logistic(models.bc_rf300.parent), rows, work),
               "big_bc_rf300": big_batch(args, "bc_rf300", models.bc_rf300, rows, work)}
    doc = {"machine": at_start, "command": " ".join(["python -m benchmarks.v2", *sys.argv[1:]]),
           "results": results, "seconds": round(time.monotonic() - started)}
    doc["verdicts"] = verdicts(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "v2.json").write_text(json.dumps(doc, indent=2))
    (args.out / "v2.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
