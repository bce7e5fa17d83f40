"""Prometheus metrics, summed over all gunicorn workers (multiprocess mode).

The master points PROMETHEUS_MULTIPROC_DIR at `<state>/metrics` and empties it at
start (`inferd.lifecycle`); each worker writes its own files there, and a scrape of
any worker reads them all. The only module that imports prometheus_client.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter(
    "ml_request_count", "HTTP requests by route template and status",
    ["method", "path", "status"],
)
LATENCY = Histogram(
    "ml_request_latency_seconds", "Request latency by route template", ["path"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
             1, 2.5, 5, 10, 30, 60),
)
ACCURACY = Gauge(
    "ml_model_accuracy", "accuracy metric of the serving model's run",
    multiprocess_mode="max",
)
GENERATION = Gauge(
    "inferd_generation", "slot generation this worker serves", multiprocess_mode="max",
)
RELOADS = Counter("inferd_reloads", "reload attempts by result", ["result"])
PREDICTED_ROWS = Counter("inferd_predicted_rows", "rows predicted")


@functools.lru_cache(maxsize=1024)
def _request_children(method: str, route: str, status: str) -> tuple[Any, Any]:
    return REQUESTS.labels(method, route, status), LATENCY.labels(route)


def observe_request(method: str, route: str, status: str, seconds: float) -> None:
    """Count one answered request and its latency. PERF: the labelled children are
    cached (routes are templates and statuses few, so the set is small); `.labels()`
    on every request cost about half of the metrics' time on the request path."""
    count, latency = _request_children(method, route, status)
    count.inc()
    latency.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text a scrape returns: every worker's samples when in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Called by the master when a worker exits, so its live gauges stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
