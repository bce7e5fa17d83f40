"""Prometheus metrics, summed over all gunicorn workers (multiprocess mode).

The master points PROMETHEUS_MULTIPROC_DIR at `<state>/metrics` and empties it at
start (`inferd.lifecycle`); each worker writes its own files there, and a scrape of
any worker reads them all. The only module that imports prometheus_client.
"""

from __future__ import annotations

import os

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
