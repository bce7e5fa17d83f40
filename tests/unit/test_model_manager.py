"""ModelHolder (one per worker) against the Reloader, on a real slot store.

The holder gets its own GenerationCounter on the same file, as a worker process would.
Versions are told apart by what they predict (ConstantModel(1) vs ConstantModel(2)).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.common.errors import NoModelError
from inferd.common.settings import Settings
from inferd.reloading.reload import Reloader, open_reloader
from inferd.serving import holder as holder_module
from inferd.serving.holder import ModelHolder
from inferd.store.generation import GenerationCounter
from tests.fakes import ConstantModel, ManualClock, write_model

ROW = np.zeros((1, 4))


@pytest.fixture
def reloader(settings: Settings) -> Reloader:
    return open_reloader(settings)


@pytest.fixture
def make_holder(reloader: Reloader) -> Callable[..., ModelHolder]:
    def make(clock: ManualClock | None = None) -> ModelHolder:
        counter = GenerationCounter(reloader.store.layout.generation)
        if clock is None:
            return ModelHolder(reloader.store, counter)
        return ModelHolder(reloader.store, counter, clock=clock)

    return make


def publish(reloader: Reloader, model_path: Path, value: int) -> int:
    write_model(model_path, ConstantModel(value))
    result = reloader.run()
    assert result.status == "reloaded"
    assert result.generation is not None
    return result.generation


def model_file(reloader: Reloader, generation: int) -> Path:
    return reloader.store.layout.slot(generation) / "model" / "model.joblib"


def test_no_model_published_raises_no_model_error(make_holder: Callable[..., ModelHolder]) -> None:
    holder = make_holder()
    with pytest.raises(NoModelError, match="no model is published yet"):
        holder.current()
    assert holder.peek() is None


def test_holder_sees_a_bump_at_its_next_current(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    first = publish(reloader, model_path, 1)
    holder = make_holder()
    old = holder.current()
    assert (old.generation, old.predict(ROW)) == (first, [1])

    second = publish(reloader, model_path, 2)

    assert second > first
    new = holder.current()
    assert (new.generation, new.predict(ROW)) == (second, [2])
    assert new.version != old.version
    assert holder.current() is new, "an unchanged counter must not reload the slot"


def test_holder_created_before_any_model_picks_up_the_first(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    holder = make_holder()
    with pytest.raises(NoModelError):
        holder.current()
    publish(reloader, model_path, 1)
    assert holder.current().predict(ROW) == [1]


def test_a_request_holding_the_old_model_keeps_it(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    publish(reloader, model_path, 1)
    holder = make_holder()
    in_flight = holder.current()  # a request took its reference, then a reload lands

    for value in (2, 3, 4, 5):  # enough reloads that retention deletes the old slot dir
        publish(reloader, model_path, value)
    assert not reloader.store.layout.slot(in_flight.generation).exists()

    assert in_flight.predict(ROW) == [1]
    assert holder.current().predict(ROW) == [5]
    assert in_flight.predict(ROW) == [1]


def test_corrupted_new_slot_keeps_the_old_model_and_exposes_the_error(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    first = publish(reloader, model_path, 1)
    holder = make_holder()
    assert holder.current().predict(ROW) == [1]

    second = publish(reloader, model_path, 2)
    victim = model_file(reloader, second)
    victim.chmod(0o600)
    with open(victim, "ab") as fh:  # bit rot / a stray edit after publishing
        fh.write(b"\0")

    serving = holder.current()
    assert (serving.generation, serving.predict(ROW)) == (first, [1])
    assert holder.last_error is not None
    assert f"slot {second}" in holder.last_error
    assert "checksum" in holder.last_error


def test_failed_load_is_retried_only_after_the_pause(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    clock = ManualClock()
    publish(reloader, model_path, 1)
    holder = make_holder(clock)
    assert holder.current().predict(ROW) == [1]

    second = publish(reloader, model_path, 2)
    victim = model_file(reloader, second)
    good = victim.read_bytes()
    victim.write_bytes(good[:-1])  # truncated
    assert holder.current().predict(ROW) == [1]
    assert holder.last_error is not None

    victim.write_bytes(good)  # repaired, but the holder does not look again yet
    clock.advance(holder_module.RETRY_AFTER_FAILURE_SECONDS - 0.5)
    assert holder.current().predict(ROW) == [1]
    assert holder.last_error is not None

    clock.advance(1.0)
    assert holder.current().predict(ROW) == [2]
    assert holder.last_error is None


def test_a_newer_bump_is_tried_at_once_even_during_the_pause(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    clock = ManualClock()
    publish(reloader, model_path, 1)
    holder = make_holder(clock)
    holder.current()

    second = publish(reloader, model_path, 2)
    model_file(reloader, second).write_bytes(b"not a model")
    assert holder.current().predict(ROW) == [1]
    assert holder.last_error is not None

    publish(reloader, model_path, 3)  # the operator ships a fix; no clock advance
    assert holder.current().predict(ROW) == [3]
    assert holder.last_error is None


def test_an_unexpected_load_error_backs_off_and_keeps_the_model(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A load that fails with something nobody expected (a library's own exception) is
    neither raised to the request nor tried again at every watcher tick (each try
    checksums the whole slot): the pause doubles with each failure of the same slot."""
    clock = ManualClock()
    publish(reloader, model_path, 1)
    holder = make_holder(clock)
    assert holder.current().predict(ROW) == [1]
    tries = []

    def broken(*args: object) -> object:
        tries.append(clock())
        raise ValueError("a library's own surprise")

    monkeypatch.setattr(holder_module, "load_slot", broken)
    publish(reloader, model_path, 2)
    for _ in range(20):  # the watcher's ticks, and requests
        holder.refresh_if_moved()
        assert holder.current().predict(ROW) == [1]
    assert len(tries) == 1
    assert holder.last_error == "ValueError: a library's own surprise"

    pause = holder_module.RETRY_AFTER_FAILURE_SECONDS
    for expected_tries in (2, 3, 4):
        clock.advance(pause - 0.1)
        holder.refresh_if_moved()
        assert len(tries) == expected_tries - 1, "not before the pause"
        clock.advance(0.2)
        holder.refresh_if_moved()
        assert len(tries) == expected_tries
        pause *= 2


def test_first_model_corrupt_means_no_model_with_the_reason(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    first = publish(reloader, model_path, 1)
    model_file(reloader, first).unlink()
    holder = make_holder()
    with pytest.raises(NoModelError, match="is missing"):
        holder.current()


def test_generation_only_grows_across_reload_noop_rollback_and_reconcile(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    holder = make_holder()
    seen = [reloader.counter.read()]

    publish(reloader, model_path, 1)
    seen.append(reloader.counter.read())
    publish(reloader, model_path, 2)
    seen.append(reloader.counter.read())
    assert reloader.run().status == "noop"
    seen.append(reloader.counter.read())
    rolled = reloader.rollback()
    seen.append(reloader.counter.read())
    reloader.reconcile()
    seen.append(reloader.counter.read())

    assert seen == sorted(seen)
    assert seen[-1] > seen[2], "rollback republishes under a new, higher generation"
    assert rolled.generation == seen[-1]
    served = holder.current()
    assert (served.generation, served.predict(ROW)) == (rolled.generation, [1])


def test_counter_ahead_of_the_slots_is_never_lowered(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    publish(reloader, model_path, 1)
    reloader.counter.bump(10)  # e.g. the newest slots were deleted by hand

    reloader.reconcile()
    assert reloader.counter.read() == 10
    holder = make_holder()
    assert holder.current().predict(ROW) == [1]

    generation = publish(reloader, model_path, 2)
    assert generation == 11
    assert holder.current().predict(ROW) == [2]


def test_watcher_loads_a_new_slot_before_any_request(
    reloader: Reloader, model_path: Path, make_holder: Callable[..., ModelHolder]
) -> None:
    from inferd.serving.watcher import SlotWatcher

    publish(reloader, model_path, 1)
    holder = make_holder()
    holder.current()
    watcher = SlotWatcher(holder, interval=0.01).start()
    try:
        second = publish(reloader, model_path, 2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            loaded = holder.peek()  # peek never loads: only the watcher can have
            if loaded is not None and loaded.generation == second:
                break
            time.sleep(0.01)
        loaded = holder.peek()
        assert loaded is not None and loaded.generation == second
        assert loaded.predict(ROW) == [2]
    finally:
        watcher.stop()


def test_watcher_ends_when_its_holder_is_gone(
    reloader: Reloader, make_holder: Callable[..., ModelHolder]
) -> None:
    import gc

    from inferd.serving.watcher import SlotWatcher

    holder = make_holder()
    watcher = SlotWatcher(holder, interval=0.01).start()
    del holder
    gc.collect()
    assert watcher.wait_ended(5)


def test_a_started_service_stops_its_threads(make_settings: Callable[..., Settings],
                                             model_path: Path, forests: tuple[Any, Any]) -> None:
    """start() starts the slot watcher and the refresh candidate, once; stop() ends
    them. A service never started has no thread."""
    import threading

    from inferd.serving.service import WorkerService

    write_model(model_path, forests[0])
    settings = make_settings(auto_refresh_seconds=30.0)
    reloader = open_reloader(settings)
    reloader.run()
    before = set(threading.enumerate())
    service = WorkerService.open(settings, runner=reloader)
    assert set(threading.enumerate()) <= before
    service.start()
    service.start()  # a second call starts nothing more
    started = set(threading.enumerate()) - before
    assert sorted(t.name for t in started) == ["inferd-refresh", "inferd-slot-watcher"]
    service.stop()
    assert not any(t.is_alive() for t in started)
