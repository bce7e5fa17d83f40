"""The reloading process killed (SIGKILL) at each step of the reload protocol, under a
real 2-worker server serving predictions the whole time.

The hook is `INFERD_TEST_FAULT_INJECTION_FILE` (test only; docs/reliability.md warns against
it): the reloading process reads a step name from that file at every step and kills
itself on a match. For each step: no prediction fails, the service always serves the
old or the new version (never none), and the next reload repairs the store and ends
with every worker on the new version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferd.reloading.reload import FAULT_INJECTION_ENV, STEPS
from tests.fakes import ConstantModel, write_model
from tests.integration.servers import InferdServer, LoadGenerator, start_local, stop_inferd
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def step_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "kill-at"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, step_file: Path) -> Iterator[InferdServer]:
    base = tmp_path_factory.mktemp("fault-injection")
    srv = start_local(base, ConstantModel(0), **{FAULT_INJECTION_ENV: str(step_file)})
    yield srv
    stop_inferd(srv)


def staging_leftovers(server: InferdServer) -> list[str]:
    return [n for n in server.slot_names() if not n.isdigit()]


@pytest.mark.parametrize("step", STEPS)
def test_a_reload_killed_at_each_step_never_leaves_the_service_without_a_model(
        server: InferdServer, step_file: Path, step: str) -> None:
    assert server.model_path is not None
    old = server.versions(1)[0]
    generation = server.current_generation()
    new_value = 100 + STEPS.index(step)
    write_model(server.model_path, ConstantModel(new_value))
    step_file.write_text(step)

    with LoadGenerator(server.url, threads=2, fresh=True, max_seconds=120) as load:
        killed = server.admin("reload")
        assert killed.status_code == 500, killed.text
        assert not step_file.exists(), "the reloading process did not reach the step"
        load.wait_requests(10)
        serving = set(server.versions(10))
        if STEPS.index(step) < STEPS.index("flipped"):
            assert serving == {old}, serving
        else:  # the old model until the counter moves, then the new one; never none
            assert serving and None not in serving, serving
        repaired = server.admin("reload")
        assert repaired.status_code == 200, repaired.text
        assert repaired.json()["status"] in ("reloaded", "noop")
        load.wait_requests(10)

    failed = [o for o in load.outcomes if o.status != 200]
    assert not failed, failed[:5]
    versions = {o.version for o in load.outcomes}
    assert None not in versions
    assert len(versions - {old}) <= 1  # old, then exactly one new version

    assert staging_leftovers(server) == []
    assert server.current_generation() > generation

    def every_worker_on_the_new_model() -> bool:
        return {r.json()["predictions"][0] for r in
                (server.predict([[1.0, 2.0, 3.0, 4.0]]) for _ in range(10))} == {new_value}

    wait_for(every_worker_on_the_new_model, 20, "every worker to serve the new model",
             server.process)
