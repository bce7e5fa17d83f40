"""20 reloads at once, from 20 clients, against 2 workers serving predictions.

Exactly one slot is published per real change and the generation grows by exactly
one; every caller gets a correct answer (`reloaded` once, `noop` for the rest, or the
same for the second wave after another change); predictions never fail; no worker
times out or is replaced.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.fakes import ConstantModel, write_model
from tests.integration.servers import (
    InferdServer,
    LoadGenerator,
    module_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CALLERS = 20
TOKEN = "storm-secret"


server = module_server("storm", admin_token=TOKEN)


def storm(server: InferdServer, callers: int) -> list[tuple[int, dict[str, Any]]]:
    """`callers` POST /admin/reload released at once; their (status, body) answers."""
    barrier = threading.Barrier(callers)
    answers: list[tuple[int, dict[str, Any]]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            barrier.wait(timeout=30)
            resp = server.admin("reload")  # its own connection: a separate client
            with lock:
                answers.append((resp.status_code, resp.json()))
        except BaseException as exc:  # reported below
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=call, name=f"caller-{i}") for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not failures, failures
    assert len(answers) == callers
    return answers


@pytest.mark.parametrize("new_value", [11, 12])
def test_a_reload_storm_publishes_one_slot_per_change(server: InferdServer,
                                                      new_value: int) -> None:
    assert server.model_path is not None
    workers = server.worker_pids()
    generation = server.current_generation()
    slots_before = {n for n in server.slot_names() if n.isdigit()}
    write_model(server.model_path, ConstantModel(new_value))

    with LoadGenerator(server.url, threads=2, fresh=True, max_seconds=120) as load:
        answers = storm(server, CALLERS)
        load.wait_requests(20)

    assert all(status == 200 for status, _ in answers), answers
    statuses = sorted(body["status"] for _, body in answers)
    assert statuses == ["noop"] * (CALLERS - 1) + ["reloaded"], statuses
    (new_version,) = [body["version"] for _, body in answers if body["status"] == "reloaded"]

    assert server.current_generation() == generation + 1
    published = {n for n in server.slot_names() if n.isdigit()}
    assert published - slots_before == {str(generation + 1)}
    assert set(server.versions(20)) == {new_version}

    failed = [o for o in load.outcomes if o.status != 200]
    assert not failed, failed[:5]
    assert server.worker_pids() == workers, "a worker was replaced during the storm"
    assert "WORKER TIMEOUT" not in server.process.log_text()
