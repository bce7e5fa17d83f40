"""The post-deploy check (`inferd smoke`): is this server ready, does it answer a
prediction, and is it serving the version the pipeline just deployed?

Three checks, in order, each stopping the run when it fails, so the failing check
names the problem (the CLI turns it into an exit code):

1. `GET /health/` answers 200 with `"ready": true` (polled for up to `wait` seconds,
   for a server that is still starting or reloading);
2. `POST /predict/` with a sample row answers 200 with one prediction. The row is the
   caller's, or zeros of the width `/health/` reports (`model.n_features`): the check
   is that the model answers, not what it answers;
3. with an expected version, `/health/`'s model and the prediction both name it.

Runs in the operator's shell or a CI job, never in the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

# Which check failed; inferd.commands.cli maps each to its exit code.
UNREACHABLE, NOT_READY, PREDICTION, VERSION, NO_SAMPLE = (
    "unreachable", "not_ready", "prediction", "version", "no_sample")


@dataclass
class SmokeReport:
    url: str
    failed: str | None = None  # one of the names above; None: every check passed
    detail: str = ""
    version: str | None = None
    checks: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.failed is None, "failed": self.failed,
                "detail": self.detail, "version": self.version, "passed": self.checks}


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"detail": resp.text[:200]}


def _health(url: str, timeout: float) -> tuple[int | None, Any]:
    try:
        resp = requests.get(f"{url}/health/", timeout=timeout,
                            headers={"Connection": "close"})
    except requests.RequestException as exc:
        return None, str(exc)
    return resp.status_code, _json(resp)


def _wait_ready(url: str, wait: float, timeout: float,
                clock: Callable[[], float]) -> tuple[int | None, Any]:
    deadline = clock() + wait
    while True:
        status, body = _health(url, timeout)
        ready = status == 200 and isinstance(body, dict) and body.get("ready") is True
        if ready or clock() >= deadline:
            return status, body
        time.sleep(min(1.0, max(0.0, deadline - clock())))


def sample_rows(health: dict[str, Any]) -> list[list[float]] | None:
    n_features = (health.get("model") or {}).get("n_features")
    if not isinstance(n_features, int) or n_features < 1:
        return None
    return [[0.0] * n_features]


def run(url: str, expect_version: str | None = None,
        rows: list[list[float]] | None = None, wait: float = 0.0, timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic) -> SmokeReport:
    url = url.rstrip("/")
    report = SmokeReport(url)
    status, health = _wait_ready(url, wait, timeout, clock)
    if status is None:
        report.failed, report.detail = UNREACHABLE, f"cannot reach {url}: {health}"
        return report
    if status != 200 or not isinstance(health, dict) or health.get("ready") is not True:
        why = (health.get("details", {}).get("error") if isinstance(health, dict) else None)
        report.failed = NOT_READY
        report.detail = f"/health/ answered {status}, not ready" + (f": {why}" if why else "")
        return report
    report.checks.append("ready")
    report.version = str((health.get("model") or {}).get("version"))

    rows = rows or sample_rows(health)
    if rows is None:
        report.failed = NO_SAMPLE
        report.detail = ("/health/ does not report the model's feature count; "
                         "pass a sample row with --features")
        return report
    try:
        resp = requests.post(f"{url}/predict/", json={"features": rows}, timeout=timeout,
                             headers={"Connection": "close"})
    except requests.RequestException as exc:
        report.failed, report.detail = UNREACHABLE, f"cannot reach {url}: {exc}"
        return report
    answer = _json(resp)
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if resp.status_code != 200 or not isinstance(predictions, list) \
            or len(predictions) != len(rows):
        report.failed = PREDICTION
        report.detail = (f"/predict/ answered {resp.status_code}: "
                         f"{json.dumps(answer)[:300]}")
        return report
    report.checks.append("prediction")

    if expect_version is not None:
        served = {report.version, str(answer.get("model_version"))}
        if served != {expect_version}:
            report.failed = VERSION
            report.detail = (f"expected version {expect_version}, the server serves "
                             f"{' and '.join(sorted(served))}")
            return report
        report.checks.append("version")
    report.detail = "ok"
    return report
