"""inferd under real gunicorn (2 gthread workers, loopback), MODEL_SOURCE=local.

One server for the module. Every test first deploys the model it starts from
(`deploy`), so the tests do not depend on their order; a test that leaves another
model behind is simply followed by a reload to whatever the next test needs.
The admin token is set for the whole module, so every admin call here also proves
the token is accepted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.fakes import ConstantModel, ExplodingModel, iris_forest, write_model
from tests.integration.servers import (
    IRIS_ROWS,
    InferdServer,
    LoadGenerator,
    start_local,
    stop_inferd,
)
from tests.support import clean_env, free_port, wait_for

pytestmark = pytest.mark.integration

TOKEN = "integration-secret"
FRESH = 50  # requests on fresh connections used to check what every worker serves


@pytest.fixture(scope="module")
def baseline() -> Any:
    return iris_forest(n_estimators=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, baseline: Any) -> Iterator[InferdServer]:
    base = tmp_path_factory.mktemp("local")
    srv = start_local(base, baseline, admin_token=TOKEN)
    yield srv
    stop_inferd(srv)


def deploy(server: InferdServer, model: object) -> str:
    """Put `model` at MODEL_PATH, reload (reloaded or noop), return the serving version."""
    assert server.model_path is not None
    write_model(server.model_path, model)
    resp = server.admin("reload")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] in ("reloaded", "noop")
    health = server.health()
    assert health.status_code == 200, health.text
    return str(health.json()["model"]["version"])


def reload_to(server: InferdServer, model: object) -> dict[str, Any]:
    """Put `model` at MODEL_PATH and reload; it must be a new version."""
    assert server.model_path is not None
    write_model(server.model_path, model)
    resp = server.admin("reload")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "reloaded", body
    assert body["detail"] == "Model reloaded successfully"
    return dict(body)


def test_prediction_names_its_version_in_header_and_body(server: InferdServer,
                                                         baseline: Any) -> None:
    version = deploy(server, baseline)
    expected = baseline.predict(np.array(IRIS_ROWS)).tolist()
    for _ in range(10):
        resp = server.predict()
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predictions": expected, "model_version": version}
        assert resp.headers["X-Model-Version"] == version
    resp = server.predict(headers={"X-Request-ID": "it-trace-42"})
    assert resp.headers["X-Correlation-ID"] == "it-trace-42"
    health = server.health().json()
    assert health["ready"] is True and health["status"] == "ok"
    assert health["model"]["version"] == version
    assert health["model"]["source"] == "local"
    assert health["admin"] == {"auth": "enabled"}
    assert health["mlflow"]["status"] == "not_used"


def test_bad_prediction_request_answers_400_not_500(server: InferdServer) -> None:
    resp = requests.post(f"{server.url}/predict/", data=b'{"features": [[1, 2]]}',
                         headers={"Connection": "close", "Content-Type": "application/json"},
                         timeout=30)
    assert resp.status_code == 400
    assert "4 features" in resp.json()["detail"]


def test_admin_endpoints_refuse_a_missing_or_wrong_token(server: InferdServer,
                                                         baseline: Any) -> None:
    deploy(server, baseline)
    generation = server.current_generation()
    assert server.model_path is not None
    write_model(server.model_path, ConstantModel(4))  # a reload would change something
    try:
        for action in ("reload", "rollback"):
            for token in (None, "", "wrong", TOKEN + "x"):
                resp = server.admin(action, token=token)
                assert resp.status_code == 403, (action, token, resp.text)
                assert resp.json() == {"detail": "Forbidden"}
        assert server.current_generation() == generation
        assert set(server.versions(10)) == {server.health().json()["model"]["version"]}
    finally:
        deploy(server, baseline)


def test_after_a_reload_every_worker_serves_the_new_version(server: InferdServer,
                                                            baseline: Any) -> None:
    old = deploy(server, baseline)
    body = reload_to(server, ConstantModel(7))
    new = body["version"]
    assert new != old and body["stage"] is None
    generation = server.current_generation()

    def check(n: int) -> None:
        for _ in range(n):
            resp = server.predict()
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"predictions": [7, 7, 7], "model_version": new}
            assert resp.headers["X-Model-Version"] == new

    def behind() -> set[int]:
        loaded = server.loaded_generations()
        return {pid for pid in server.worker_pids() if generation not in loaded.get(pid, ())}

    check(FRESH)
    # And proof that every worker took part: each logged loading the new slot. The
    # kernel picks which worker accepts a connection, so allow a few more requests.
    for _ in range(10):
        if not behind():
            break
        check(20)
    assert not behind(), f"workers {behind()} never loaded generation {generation}"

    again = server.admin("reload")
    assert again.status_code == 200
    assert again.json() == {"status": "noop", "detail": "Model descriptor unchanged",
                            "version": None, "stage": None}
    assert server.current_generation() == generation


def test_broken_new_version_answers_500_and_old_version_keeps_serving(
        server: InferdServer, baseline: Any) -> None:
    old = deploy(server, baseline)
    generation = server.current_generation()
    assert server.model_path is not None
    write_model(server.model_path, ExplodingModel())
    try:
        resp = server.admin("reload")
        assert resp.status_code == 500, resp.text
        detail = resp.json()["detail"]
        assert detail.startswith("Reload failed: ")
        assert "smoke prediction failed" in detail and "broken on purpose" in detail

        assert server.current_generation() == generation
        assert not [n for n in server.slot_names() if n.startswith(".")], server.slot_names()
        assert set(server.versions(FRESH)) == {old}
        health = server.health()
        assert health.status_code == 200
        assert health.json()["ready"] is True
        assert health.json()["model"]["version"] == old
        assert "error" not in health.json()["details"]
    finally:
        deploy(server, baseline)


def test_reload_under_continuous_load_gives_no_errors(server: InferdServer,
                                                      baseline: Any) -> None:
    v1 = deploy(server, baseline)
    with LoadGenerator(server.url, threads=4, fresh=False, max_seconds=60) as load:
        load.wait_requests(100)
        first = reload_to(server, ConstantModel(3))
        first_done = time.monotonic()
        load.wait_requests(100)
        second_start = time.monotonic()
        second = reload_to(server, baseline)
        second_done = time.monotonic()
        load.wait_requests(100)
    outcomes = load.outcomes
    v2 = first["version"]
    assert second["version"] == v1 != v2

    failures = [o for o in outcomes if o.status != 200]
    assert not failures, f"{len(failures)} of {len(outcomes)} failed, e.g. {failures[:3]}"
    assert len(outcomes) >= 300
    # Requests that began after a reload answered all see that reload's model.
    between = [o.version for o in outcomes if first_done < o.started and o.ended < second_start]
    after = [o.version for o in outcomes if o.started > second_done]
    assert between and set(between) == {v2}
    assert after and set(after) == {v1}
    assert {o.version for o in outcomes} == {v1, v2}


def test_rollback_over_http_serves_the_previous_model(server: InferdServer,
                                                      baseline: Any) -> None:
    old = deploy(server, baseline)
    new = reload_to(server, ConstantModel(9))["version"]
    assert set(server.versions(10)) == {new}
    generation = server.current_generation()

    resp = server.admin("rollback")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "reloaded"
    assert body["version"] == old
    assert body["detail"].startswith("Rolled back to the model of slot")
    # Rollback republishes the old model as a new generation: generation only grows.
    assert server.current_generation() == generation + 1
    expected = baseline.predict(np.array(IRIS_ROWS)).tolist()
    for _ in range(20):
        resp = server.predict()
        assert resp.status_code == 200
        assert resp.json() == {"predictions": expected, "model_version": old}
    deploy(server, baseline)


def test_predictions_are_counted_over_all_workers(server: InferdServer,
                                                  baseline: Any) -> None:
    deploy(server, baseline)

    def predicted_rows() -> float:
        resp = requests.get(f"{server.url}/metrics", headers={"Connection": "close"},
                            timeout=30)
        assert resp.status_code == 200
        for line in resp.text.splitlines():
            if line.startswith("inferd_predicted_rows_total "):
                return float(line.split()[1])
        return 0.0

    before = predicted_rows()
    server.versions(20)  # fresh connections: both workers answer some
    assert predicted_rows() == before + 20 * len(IRIS_ROWS)


@pytest.mark.slow
def test_killed_worker_is_replaced_and_predictions_continue(server: InferdServer,
                                                            baseline: Any) -> None:
    version = deploy(server, baseline)
    workers = server.worker_pids()
    assert len(workers) == server.workers
    victim = min(workers)
    with LoadGenerator(server.url, threads=3, fresh=True, max_seconds=90) as load:
        load.wait_requests(50)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        load.wait_requests(30)  # the surviving worker keeps answering
        wait_for(lambda: victim not in server.worker_pids()
                 and len(server.worker_pids()) == server.workers,
                 timeout=30, what="gunicorn to replace the killed worker")
        replaced = server.wait_workers_ready(timeout=60)
        ready_at = time.monotonic()
        load.wait_requests(100)
    assert victim not in replaced and len(replaced & workers) == 1
    assert server.process.running(), "the master died with its worker"

    outcomes = load.outcomes
    failed = [o for o in outcomes if o.status != 200]
    # Only requests in flight on the killed worker may fail: one per client thread.
    assert len(failed) <= 3, failed
    assert all(o.started < killed_at + 1.0 for o in failed), failed
    assert [o for o in outcomes if killed_at < o.started and o.ended < ready_at
            and o.status == 200], "nothing was served while the worker was replaced"
    late = [o for o in outcomes if o.started > ready_at]
    assert late and all(o.status == 200 and o.version == version for o in late)
    assert set(server.versions(20)) == {version}


def test_cli_talks_to_the_running_server(server: InferdServer, baseline: Any,
                                         tmp_path: Path) -> None:
    version = deploy(server, baseline)
    generation = server.current_generation()

    def inferd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "inferd", *args], capture_output=True,
                              text=True, timeout=60,
                              env=clean_env(INFERD_STATE_DIR=str(server.state_dir), **env))

    # The token from the environment or a file, never from the command line.
    done = inferd("reload", "--url", server.url, ADMIN_API_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "noop"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("wrong\n")
    refused = inferd("reload", "--url", server.url, "--token-file", str(wrong))
    assert refused.returncode == 1
    assert json.loads(refused.stdout) == {"detail": "Forbidden"}

    status = inferd("status", "--url", server.url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["model"]["version"] == version
    unreachable = inferd("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3

    slots = inferd("slots")
    assert slots.returncode == 0, slots.stderr
    (marked,) = [line for line in slots.stdout.splitlines() if line.startswith("*")]
    assert marked.split()[1:3] == [str(generation), version]


@pytest.mark.slow
def test_hup_replaces_the_workers_without_dropping_requests(server: InferdServer,
                                                            baseline: Any) -> None:
    """`systemctl reload inferd` sends HUP: gunicorn's graceful worker restart. The new
    workers must come up on the current slot, not the one published at start-up."""
    deploy(server, baseline)
    version = reload_to(server, ConstantModel(6))["version"]
    old = server.worker_pids()
    with LoadGenerator(server.url, threads=3, fresh=True, max_seconds=90) as load:
        load.wait_requests(30)
        os.kill(server.process.proc.pid, signal.SIGHUP)
        wait_for(lambda: len(server.worker_pids()) == server.workers
                 and not server.worker_pids() & old,
                 timeout=60, what="HUP to replace both workers", process=server.process)
        server.wait_workers_ready(timeout=60)
        load.wait_requests(50)
    assert server.process.running()
    failures = [o for o in load.outcomes if o.status != 200]
    assert not failures, f"{len(failures)} of {len(load.outcomes)} failed: {failures[:3]}"
    assert {o.version for o in load.outcomes} == {version}
    deploy(server, baseline)
