"""A worker whose state directory could not be opened at start keeps trying, with a
growing pause, and serves once it opens (instead of answering 503 until restarted)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from falcon import testing

from inferd.app import create_app
from inferd.common.errors import StoreError
from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.serving import store_opener
from inferd.serving.service import WorkerService
from inferd.serving.store_opener import StoreOpener
from tests.fakes import ManualClock, write_model

ROWS = {"features": [[5.1, 3.5, 1.4, 0.2]]}


def test_a_worker_serves_once_its_state_directory_opens(
    make_settings: Callable[..., Settings], tmp_path: Path, model_path: Path,
    forests: tuple[Any, Any],
) -> None:
    state = tmp_path / "state-later"
    state.write_text("")  # a file where the directory should be: opening fails
    settings = make_settings(state_dir=state)
    service = WorkerService.open(settings, runner=None)
    client = testing.TestClient(create_app(service))
    assert client.simulate_post("/predict/", json=ROWS).status_code == 503
    assert client.simulate_post("/admin/reload").status_code == 503

    state.unlink()  # the operator fixes it; another process publishes a model
    write_model(model_path, forests[0])
    open_reloader(settings).run()

    deadline = time.monotonic() + 10 * store_opener.FIRST_RETRY_SECONDS
    while (resp := client.simulate_post("/predict/", json=ROWS)).status_code == 503:
        assert time.monotonic() < deadline, "the worker never opened the store again"
        time.sleep(0.1)
    assert resp.status_code == 200, resp.text
    assert client.simulate_get("/health/").json["ready"] is True


def test_tries_pause_longer_after_each_failure() -> None:
    clock = ManualClock()
    tries = []

    def still_broken() -> Any:
        tries.append(clock())
        raise StoreError("cannot open the state directory")

    opener = StoreOpener(still_broken, "first failure", clock)
    pauses = []
    for _ in range(8):
        while opener.try_open() is None and len(tries) == len(pauses):
            clock.advance(0.25)
        pauses.append(tries[-1] - (tries[-2] if len(tries) > 1 else 1000.0))
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert opener.last_error == "cannot open the state directory"
