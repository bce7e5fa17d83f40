"""What one /predict/ request costs in a worker, step by step, against the floor's.

Builds the real Falcon app in a temporary state directory, on a compiled iris forest
(100 trees) or on the model at `--model` (a file or an MLflow model directory, such as
the suite's cached XGBoost one), then times each step of the request path in a loop
(median of `--n` runs, microseconds): the generation check, body decode and validation,
predict, encode, metrics, the correlation id, the JSON access line; then the whole
request, for inferd and for the floor (`benchmarks.floor_app`):

- through Falcon alone (the WSGI call, with an environ built in Python);
- through gunicorn's own parser, `wsgi.create`, the app, gunicorn's response writer
  and the access line, as a gthread worker runs them, with no socket: what a worker's
  CPU pays per request short of the system calls. Measured as CPU time (best of 5
  batches), which is the quantity the suite's "server CPU a request" compares; then
  split into its phases (parse, `wsgi.create`, the app, the writer, the access line).

Run it before and after a change to the request path, in turn, in the two trees:

    python -m benchmarks.request_steps [--rows 1] [--n 2000] [--model PATH]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROW = [5.1, 3.5, 1.4, 0.2]


def timed(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def cpu_per_call(fn: Callable[[], Any], n: int) -> float:
    """CPU microseconds a call, best of 5 batches of `n` (the least disturbed)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - started)
    return best / n * 1e6


class _DiscardingSocket:
    def sendall(self, data: bytes) -> None:
        pass

    send = sendall


def through_gunicorn(app: Any, body: bytes, log: Any,
                     last: dict[str, Any] | None = None) -> Callable[[], None]:
    """One request as gunicorn's gthread worker handles it (gunicorn 26,
    `ThreadWorker.handle_request`), without a socket: parse, `wsgi.create`, the app,
    the response writer, the access line through `log` (the worker's logger). `last`
    keeps the arguments of the last access line."""
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    raw = (b"POST /predict/ HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n"
           b"Content-Type: application/json\r\n\r\n%s" % (len(body), body))
    client, sock = ("127.0.0.1", 50000), _DiscardingSocket()

    def one() -> None:
        req = next(RequestParser(log.cfg, iter([raw]), client))
        started = datetime.now()
        resp, environ = wsgi.create(req, sock, client, "127.0.0.1:8000", log.cfg)
        environ["wsgi.multithread"] = True
        for chunk in app(environ, resp.start_response):
            resp.write(chunk)
        resp.close()
        log.access(resp, req, environ, datetime.now() - started)
        if last is not None:
            last.update(resp=resp, req=req, environ=environ)
        if resp.status_code != 200:
            raise RuntimeError(f"the request answered {resp.status}")

    return one


PHASES = ("parse", "wsgi.create", "app", "write", "access line")


def phases(app: Any, body: bytes, log: Any, n: int) -> list[float]:
    """Median wall microseconds of each of PHASES over `n` requests through gunicorn's
    path (medians: a shared machine's preemptions land in a few samples): where a step
    that is cheap in a hot loop costs more between two requests."""
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    raw = (b"POST /predict/ HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n"
           b"Content-Type: application/json\r\n\r\n%s" % (len(body), body))
    client, sock = ("127.0.0.1", 50000), _DiscardingSocket()
    samples: list[list[int]] = [[] for _ in PHASES]
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        req = next(RequestParser(log.cfg, iter([raw]), client))
        t1 = clock()
        resp, environ = wsgi.create(req, sock, client, "127.0.0.1:8000", log.cfg)
        t2 = clock()
        chunks = list(app(environ, resp.start_response))
        t3 = clock()
        for chunk in chunks:
            resp.write(chunk)
        resp.close()
        t4 = clock()
        log.access(resp, req, environ, timedelta(microseconds=(t4 - t1) // 1000))
        t5 = clock()
        for i, (start, end) in enumerate(zip((t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5),
                                             strict=True)):
            samples[i].append(end - start)
    return [statistics.median(phase) / 1000 for phase in samples]


def through_falcon(app: Any, body: bytes) -> Callable[[], None]:
    def one() -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict/", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                   "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.errors": sys.stderr}
        app(environ, lambda status, headers, exc_info=None: None)

    return one


def worker_logger(log_file: Path) -> Any:
    """gunicorn's logger configured as inferd's workers have it: JSON lines (to
    `log_file`) and inferd's access line in place of gunicorn's."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from inferd.common import logs

    config = logs.gunicorn_logconfig("info")
    config["handlers"]["stderr"]["stream"] = open(log_file, "w")  # noqa: SIM115  (kept open)
    cfg = Config()
    cfg.set("logconfig_dict", config)
    log = Logger(cfg)
    logs.AccessLine.install(log)
    return log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--model", type=Path, help="a model file or MLflow model directory "
                        "(default: a compiled iris forest of 100 trees)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferd-steps-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    (work / "metrics").mkdir()

    from inferd.app import create_app
    from inferd.common import metrics
    from inferd.common.settings import Settings
    from inferd.reloading.reload import open_reloader
    from inferd.serving.holder import ModelHolder
    from inferd.serving.service import WorkerService
    from inferd.web.codecs import native as payload
    from inferd.web.middleware import new_correlation_id
    from tests.fakes import iris_forest, write_model

    log = worker_logger(work / "log.jsonl")
    model_path = args.model or write_model(work / "model.joblib", iris_forest(n_estimators=100))
    settings = Settings(state_dir=work / "state", model_source="local", model_path=model_path)
    open_reloader(settings).run()
    app = create_app(WorkerService.open(settings))  # never started: no threads
    reloader = open_reloader(settings)
    holder = ModelHolder(reloader.store, reloader.counter)
    model = holder.current()
    width = model.n_features or len(ROW)
    row = (ROW * (width // len(ROW) + 1))[:width]  # the iris row, repeated to the width
    body = orjson.dumps({"features": [row] * args.rows})
    rows = payload.decode(body, 10_000)
    predictions = model.predict(rows)

    from benchmarks.floor_app import app as floor

    answered: dict[str, Any] = {}
    through_gunicorn(app, body, log, answered)()  # the access line below is this one's
    steps: dict[str, Callable[[], Any]] = {
        "generation check (holder.current)": holder.current,
        "JSON decode (orjson.loads)": lambda: orjson.loads(body),
        "decode + validate (payload.decode)": lambda: payload.decode(body, 10_000),
        f"predict ({model.form})": lambda: model.predict(rows),
        "encode (payload.encode)": lambda: payload.encode(predictions, model.version),
        "metrics (counter + histogram)": lambda: metrics.observe_request(
            "POST", "/predict", "200", 0.001),
        "correlation id": new_correlation_id,
        "access line (JSON, to a file)": lambda: log.access(
            answered["resp"], answered["req"], answered["environ"], timedelta(microseconds=99)),
        "whole request through Falcon: inferd": through_falcon(app, body),
        "whole request through Falcon: floor": through_falcon(floor, body),
    }
    print(f"| step ({args.rows} row(s), {model_path.name}) | median us |\n|---|---|")
    for name, fn in steps.items():
        print(f"| {name} | {timed(fn, args.n):.1f} |")
    print("\n| through gunicorn, no socket | CPU us a request |\n|---|---|")
    for name, app_under_test in (("inferd", app), ("floor", floor)):
        one = through_gunicorn(app_under_test, body, log)
        print(f"| {name} | {cpu_per_call(one, args.n):.1f} |")
    ours, floors = phases(app, body, log, args.n), phases(floor, body, log, args.n)
    print("\n| phase through gunicorn | inferd, median us | floor, median us |\n|---|---|---|")
    for name, mine, bare in zip(PHASES, ours, floors, strict=True):
        print(f"| {name} | {mine:.1f} | {bare:.1f} |")
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
