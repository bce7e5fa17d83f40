"""Prometheus metrics, summed over all gunicorn workers (multiprocess mode).

The master empties the directory of the PROMETHEUS_MULTIPROC_DIR setting (default
`<state>/metrics`) at start and exports the variable (`inferd.server.lifecycle`)
before any process imports prometheus_client, which reads it on import and switches
to multiprocess mode; each worker writes its own files there, and a scrape of any
worker reads them all. The only module that imports prometheus_client.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    mmap_dict,
    multiprocess,  # at import, not at the first scrape: the master preloads it for workers
    values,
)

# The mode prometheus_client chose when it was imported, from the variable the master
# exported: the metrics of this process are in files (multiprocess) or in memory.
# Asked of the library rather than of the environment, so the scrape always reads where
# the values are written. `ValueClass` is chosen once, at import:
# https://github.com/prometheus/client_python/blob/v0.26.0/prometheus_client/values.py#L163
MULTIPROCESS = values.ValueClass is not values.MutexValue

# Each worker maps five files of its own (counter, histogram, three live gauges), each
# created at 64 kB, and the kernel maps 64 kB around a page fault: 320 kB a worker, for
# a few kB of values (the largest file seen in the benchmarks, a histogram, used 8.5 kB).
# prometheus_client doubles a full file, so a smaller start only delays that. Its size
# is read when a file is created (https://github.com/prometheus/client_python/blob/
# v0.26.0/prometheus_client/mmap_dict.py#L7); tests/unit/test_request_metrics.py checks
# it still is.
METRICS_FILE_BYTES = 16 * 1024
mmap_dict._INITIAL_MMAP_SIZE = METRICS_FILE_BYTES


class ProcessId:
    """This process's id, read from the kernel once and again only after a fork.

    PERF: prometheus_client's multiprocess values ask for the process id on every
    increment, to notice a fork and move to the new process's files
    (https://github.com/prometheus/client_python/blob/v0.26.0/prometheus_client/values.py#L103);
    `os.getpid` is a system call, four or five a request. `MultiProcessValue` takes the
    function it asks (`process_identifier`), and this one answers from memory, updated
    in the child of every `os.fork` (gunicorn's workers, a forked reload child) before
    the child runs any other Python code."""

    def __init__(self, getpid: Callable[[], int] = os.getpid) -> None:
        self._getpid = getpid
        self.pid = getpid()

    def forked(self) -> None:
        self.pid = self._getpid()

    def __call__(self) -> int:
        return self.pid


PROCESS_ID = ProcessId()
os.register_at_fork(after_in_child=PROCESS_ID.forked)
if MULTIPROCESS:
    # Set before any metric below is declared: each takes its value class on creation.
    values.ValueClass = values.MultiProcessValue(process_identifier=PROCESS_ID)

REQUESTS = Counter(
    "ml_request_count", "HTTP requests by method, route template and status",
    ["method", "path", "status"],
)
# From 0.1 ms (one-row predictions on a compiled slot) to a minute (a reload that
# downloads a large model).
LATENCY = Histogram(
    "ml_request_latency_seconds", "Request latency by route template", ["path"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
             0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# "live" gauge modes drop a worker's value once the master marks it dead, so a
# replaced worker cannot keep reporting an old model.
ACCURACY = Gauge(
    "ml_model_accuracy", "accuracy metric logged with the serving model's MLflow run",
    multiprocess_mode="livemostrecent",
)
GENERATION = Gauge(
    "inferd_generation", "newest slot generation served by any live worker",
    multiprocess_mode="livemax",
)
OLDEST_GENERATION = Gauge(
    "inferd_generation_oldest", "oldest slot generation still served by a live worker "
    "(equal to inferd_generation once every worker has switched)",
    multiprocess_mode="livemin",
)
RELOADS = Counter(
    "inferd_reloads", "reload and rollback attempts by action and result "
    "(reloaded, noop, failed, forbidden)", ["action", "result"],
)
MODEL_LOAD_SECONDS = Histogram(
    "inferd_model_load_seconds", "Time a worker took to load a slot",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PREDICTED_ROWS = Counter("inferd_predicted_rows", "rows predicted")


def slot_loaded(generation: int, run_metrics: dict[str, float], seconds: float) -> None:
    """A worker switched to a slot: its gauges follow at once, not at the next /health/."""
    GENERATION.set(generation)
    OLDEST_GENERATION.set(generation)
    accuracy = run_metrics.get("accuracy")
    # NaN rather than the previous model's figure when the new run logged none.
    ACCURACY.set(accuracy if isinstance(accuracy, int | float) else math.nan)
    MODEL_LOAD_SECONDS.observe(seconds)


@functools.lru_cache(maxsize=1024)
def _request_observer(method: str, route: str, status: str) -> Callable[[float], None]:
    return _observer(REQUESTS.labels(method, route, status), LATENCY.labels(route))


def _observer(count: Any, latency: Any) -> Callable[[float], None]:
    """Count a request of one labelled (count, latency) pair and observe its seconds.

    PERF: `Counter.inc` and `Histogram.observe` check on every call what always holds
    for a labelled child and a duration (it is observable, the amount is not negative,
    no exemplar) and find the bucket in a Python loop
    (https://github.com/prometheus/client_python/blob/v0.26.0/prometheus_client/metrics.py#L337
    and #L667); this increments the same values (`_value`, `_sum`, `_buckets`, the
    bucket the first upper bound >= the seconds, found by bisection) directly. A
    prometheus_client without those attributes gets the public calls."""
    try:
        total, seconds_sum = count._value, latency._sum
        buckets, bounds = latency._buckets, list(latency._upper_bounds)
    except AttributeError:  # pragma: no cover (another prometheus_client)
        def observe_public(seconds: float) -> None:
            count.inc()
            latency.observe(seconds)

        return observe_public

    def observe(seconds: float) -> None:
        total.inc(1)
        seconds_sum.inc(seconds)
        buckets[bisect.bisect_left(bounds, seconds)].inc(1)

    return observe


def observe_request(method: str, route: str, status: str, seconds: float) -> None:
    """Count one answered request and its latency. PERF: the labelled children are
    cached (routes are templates and statuses few, so the set is small); `.labels()`
    on every request cost about half of the metrics' time on the request path."""
    _request_observer(method, route, status)(seconds)


def _rows_counter() -> Callable[[float], None]:
    # PERF: as `_observer`, the value itself, past Counter.inc's checks.
    value = getattr(PREDICTED_ROWS, "_value", None)
    return value.inc if value is not None else PREDICTED_ROWS.inc


rows_predicted = _rows_counter()


def exposition() -> tuple[bytes, str]:
    """The text a scrape returns: every worker's samples when in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
