"""The benchmark suite's parsing and its --check verdict (the benchmarks themselves
never run in tests)."""

from __future__ import annotations

import pytest

from benchmarks.report import alternated_efficiency, check
from benchmarks.tools import parse_wrk

WRK_OUTPUT = """Running 4s test @ http://127.0.0.1:4000/predict/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    2.01ms  40.12ms   90.00%
  Latency Distribution
     50%    2.50ms
     75%    3.20ms
     90%    4.10ms
     99%  850.00us
  8404 requests in 4.00s, 1.50MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:   2101.00
Transfer/sec:    383.22KB
"""


def test_parse_wrk_reads_rate_percentiles_and_failures() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.seconds, result.rps) == (8404, 4.0, 2101.0)
    assert (result.p50_ms, result.p99_ms) == (2.5, 0.85)
    assert (result.non_2xx, result.socket_errors) == (5, 3)


def test_check_fails_only_beyond_the_tolerance_or_the_target() -> None:
    baseline = {"up": {"value": 10.0, "better": "higher", "gate": "baseline"},
                "down": {"value": 1.0, "better": "lower", "gate": "baseline"},
                "lag": {"value": 0.02, "better": "lower", "gate": "target", "target": 1.0},
                "rate": {"value": 50.0, "better": "higher", "gate": None, "target": 40.0}}
    fine = {"up": {"value": 7.0}, "down": {"value": 1.3}, "lag": {"value": 0.5},
            "rate": {"value": 5.0}}
    assert check(fine, baseline, 0.35) == 0  # "rate" is reported, not gated
    assert check({**fine, "up": {"value": 6.0}}, baseline, 0.35) == 1
    assert check({**fine, "down": {"value": 1.4}}, baseline, 0.35) == 1
    assert check({**fine, "lag": {"value": 1.5}}, baseline, 0.35) == 1


def test_cpu_efficiency_is_the_median_of_the_alternated_rounds() -> None:
    rounds = [{"floor": 0.25, "inferd": 0.50}, {"floor": 0.30, "inferd": 0.40},
              {"floor": 0.20, "inferd": 0.25}]
    assert alternated_efficiency(rounds) == pytest.approx(0.75)  # of 0.5, 0.75 and 0.8
    assert alternated_efficiency(None) is None
    assert alternated_efficiency([{"floor": 0.2, "inferd": 0.0}]) is None
