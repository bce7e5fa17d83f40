"""The request path's metrics, made cheaper: the process id the multiprocess values ask
for on every increment is read once and again after a fork (so a forked worker still
writes its own files), and a request is counted and observed as the public calls would."""

from __future__ import annotations

import os
from typing import Any

from inferd.common import metrics


def test_the_process_id_is_read_once_and_again_after_a_fork() -> None:
    pids = iter([100, 200])
    calls = []

    def getpid() -> int:
        calls.append(1)
        return next(pids)

    process_id = metrics.ProcessId(getpid)
    assert [process_id(), process_id(), process_id()] == [100, 100, 100]
    assert len(calls) == 1
    process_id.forked()
    assert process_id() == 200


def test_a_forked_child_answers_its_own_pid() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, f"{metrics.PROCESS_ID()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert answer[0] == answer[1] == str(child)
    assert metrics.PROCESS_ID() == os.getpid()


def _samples(registry: Any) -> list[tuple[str, list[tuple[str, str]], float]]:
    return sorted((s.name, sorted(s.labels.items()), s.value) for family in registry.collect()
                  for s in family.samples if not s.name.endswith("_created"))


def test_a_request_is_observed_as_counter_inc_and_histogram_observe_would() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    buckets = metrics.LATENCY._upper_bounds[:-1]
    registries = []
    for direct in (True, False):
        registry = CollectorRegistry()
        count = Counter("requests", "", ["route"], registry=registry).labels("/predict")
        latency = Histogram("latency", "", ["route"], buckets=buckets,
                            registry=registry).labels("/predict")
        observe = metrics._observer(count, latency)
        for seconds in (0.0, 0.00005, 0.0001, 0.00010001, 0.003, 60, 61, 1e9):
            if direct:
                observe(seconds)
            else:
                count.inc()
                latency.observe(seconds)
        registries.append(registry)
    assert _samples(registries[0]) == _samples(registries[1])


METRICS_FILES = r"""
import json, os, sys
from pathlib import Path
from inferd.common import metrics

routes = int(sys.argv[1])
for i in range(routes):
    metrics.observe_request("POST", f"/route/{i}", "200", 0.001 * i)
files = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).iterdir()
sizes = {p.name.split("_")[0]: p.stat().st_size for p in files}
text = metrics.exposition()[0].decode()
counted = [line for line in text.splitlines() if line.startswith("ml_request_count_total{")]
print(json.dumps({"sizes": sizes, "counted": len(counted)}))
"""


def test_a_workers_metric_files_start_small_and_grow_when_full(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    from tests.support import clean_env

    def run(routes: int) -> dict[str, Any]:
        directory = tmp_path / str(routes)
        directory.mkdir()
        done = subprocess.run([sys.executable, "-c", METRICS_FILES, str(routes)],
                              env=clean_env(PROMETHEUS_MULTIPROC_DIR=str(directory)),
                              capture_output=True, text=True, timeout=60, check=True)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    few = run(3)
    assert few["sizes"] and set(few["sizes"].values()) == {metrics.METRICS_FILE_BYTES}
    assert few["counted"] == 3
    many = run(200)  # a histogram's 200 series do not fit in 16 kB: the file grows
    assert many["sizes"]["histogram"] > metrics.METRICS_FILE_BYTES
    assert many["counted"] == 200
