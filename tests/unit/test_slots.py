"""The slot store and the reload protocol under faults.

A crash is simulated for real: a forked child runs a reload whose checkpoint calls
`os._exit(9)` at the target step (no `finally`, no lock release in Python, exactly
like a SIGKILL), then the parent reconciles and checks the store's invariants.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inferd.common.errors import NoModelError, StoreError
from inferd.common.settings import Settings
from inferd.reloading.reload import STEPS, open_reloader
from inferd.serving.holder import ModelHolder
from inferd.store.generation import GenerationCounter
from inferd.store.layout import CURRENT_TMP_PREFIX, STAGING_PREFIX, StateLayout
from inferd.store.slots import SlotStore, verify_files
from tests.fakes import ConstantModel, ExplodingModel, write_model

ROW = np.zeros((1, 4))
KILLED = 9
OLD, NEW = 1, 2


def kill_at(target: str) -> Callable[[str], None]:
    def checkpoint(step: str) -> None:
        if step == target:
            os._exit(KILLED)

    return checkpoint


def run_in_killed_child(settings: Settings, step: str) -> int:
    """Fork; the child reloads and dies at `step`. Return the child's exit status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            open_reloader(settings, checkpoint=kill_at(step)).run()
            code = 0  # reached only if the checkpoint was never called
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serving_value(settings: Settings) -> int:
    """What a freshly started worker would answer with."""
    layout = StateLayout(settings.state_dir)
    holder = ModelHolder(SlotStore(layout), GenerationCounter(layout.generation))
    (value,) = holder.current().predict(ROW)
    return int(value)


def assert_store_consistent(settings: Settings) -> int:
    """The invariants of docs/reload.md after reconcile; returns the current generation."""
    layout = StateLayout(settings.state_dir)
    store = SlotStore(layout)
    current = store.current_generation()
    assert current is not None, "current must point to a slot"
    assert layout.current.is_symlink() and layout.current.resolve() == layout.slot(current)
    verify_files(layout.slot(current), store.read_manifest(current))  # complete, intact
    assert not list(layout.slots.glob(f"{STAGING_PREFIX}*")), "staging leftovers"
    assert not list(layout.root.glob(f"{CURRENT_TMP_PREFIX}*")), "temporary symlink leftovers"
    assert max(store.published()) == current, "a slot newer than current survived"
    for generation in store.published():
        assert layout.manifest(generation).is_file(), f"slots/{generation} has no manifest"
    counter = GenerationCounter(layout.generation)
    assert counter.read() >= current
    return current


@pytest.fixture
def old_published(settings: Settings, model_path: Path) -> int:
    """State with OLD serving, and MODEL_PATH already holding NEW for the next reload."""
    write_model(model_path, ConstantModel(OLD))
    result = open_reloader(settings).run()
    assert result.status == "reloaded" and result.generation is not None
    write_model(model_path, ConstantModel(NEW))
    return result.generation


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_leaves_old_or_new_serving_and_store_consistent(
    settings: Settings, old_published: int, step: str
) -> None:
    assert run_in_killed_child(settings, step) == KILLED

    actions = open_reloader(settings).reconcile()

    current = assert_store_consistent(settings)
    flipped = STEPS.index(step) >= STEPS.index("flipped")
    expected = NEW if flipped else OLD
    assert serving_value(settings) == expected
    assert (current > old_published) == flipped
    if step in ("fetched", "validated"):
        assert any("staging" in action for action in actions)
    if step == "renamed":
        assert any("never made current" in action for action in actions)
    if step == "flipped":
        assert f"raised generation to {current}" in actions


@pytest.mark.parametrize("step", STEPS)
def test_lock_is_released_when_the_reloading_process_dies(
    settings: Settings, old_published: int, step: str
) -> None:
    assert run_in_killed_child(settings, step) == KILLED

    # A reload that found the lock still held would wait, then fail with ReloadBusyError.
    result = open_reloader(settings, lock_timeout=2.0).run()

    flipped = STEPS.index(step) >= STEPS.index("flipped")
    assert result.status == ("noop" if flipped else "reloaded")
    assert_store_consistent(settings)
    assert serving_value(settings) == NEW


@pytest.mark.parametrize("step", STEPS)
def test_kill_during_the_very_first_reload(
    settings: Settings, model_path: Path, step: str
) -> None:
    write_model(model_path, ConstantModel(NEW))
    assert run_in_killed_child(settings, step) == KILLED

    open_reloader(settings).reconcile()

    if STEPS.index(step) < STEPS.index("renamed"):
        # Nothing was published: still no model, and nothing half-made is left.
        layout = StateLayout(settings.state_dir)
        assert not layout.current.exists()
        assert os.listdir(layout.slots) == []
        with pytest.raises(NoModelError):
            serving_value(settings)
    else:
        # A validated, renamed slot is complete; with nothing else to serve, it is used.
        assert_store_consistent(settings)
        assert serving_value(settings) == NEW


def test_reconcile_removes_strays_and_repairs_a_dangling_current(
    settings: Settings, old_published: int
) -> None:
    layout = StateLayout(settings.state_dir)
    (layout.slots / f"{STAGING_PREFIX}abc").mkdir()
    (layout.slots / f"{STAGING_PREFIX}abc" / "partial.bin").write_bytes(b"x")
    os.symlink("slots/999", layout.root / f"{CURRENT_TMP_PREFIX}abc")
    (layout.slots / "7").mkdir()  # renamed without a manifest: not a complete slot
    os.unlink(layout.current)
    os.symlink("slots/42", layout.current)  # points nowhere

    actions = open_reloader(settings).reconcile()

    assert assert_store_consistent(settings) == old_published
    assert serving_value(settings) == OLD
    assert len(actions) == 5  # moving current also raises the counter, so workers follow
    assert actions[-1].startswith("raised generation to")
    assert open_reloader(settings).reconcile() == [], "reconcile is idempotent"


def test_retention_prunes_old_slots_but_keeps_the_previous(
    make_settings: Callable[..., Settings], model_path: Path
) -> None:
    settings = make_settings(slot_retention=2)
    reloader = open_reloader(settings)
    generations: list[int] = []
    for value in range(1, 6):
        write_model(model_path, ConstantModel(value))
        generation = reloader.run().generation
        assert generation is not None
        generations.append(generation)

    assert reloader.store.published() == generations[-2:]
    assert reloader.store.current_generation() == generations[-1]

    result = reloader.rollback()
    assert serving_value(settings) == 4
    assert result.generation is not None and result.generation > generations[-1]
    assert reloader.store.published() == [generations[-1], result.generation]


def test_retention_default_keeps_three(settings: Settings, model_path: Path) -> None:
    reloader = open_reloader(settings)
    for value in range(1, 6):
        write_model(model_path, ConstantModel(value))
        reloader.run()
    assert len(reloader.store.published()) == 3


def test_every_published_slot_is_complete_at_every_step(
    settings: Settings, old_published: int
) -> None:
    layout = StateLayout(settings.state_dir)
    store = SlotStore(layout)
    seen = []

    def inspect(step: str) -> None:
        seen.append(step)
        for generation in store.published():
            verify_files(layout.slot(generation), store.read_manifest(generation))

    open_reloader(settings, checkpoint=inspect).run()
    assert tuple(seen) == STEPS


def test_failed_publish_leaves_no_slot_and_no_staging(
    settings: Settings, old_published: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", disk_full)
    with pytest.raises(StoreError, match="cannot publish slot 2: the disk is full"):
        open_reloader(settings).run()
    monkeypatch.undo()

    layout = StateLayout(settings.state_dir)
    assert sorted(os.listdir(layout.slots)) == [str(old_published)]
    assert serving_value(settings) == OLD


def test_failed_validation_leaves_no_slot_and_old_model_serving(
    settings: Settings, old_published: int, model_path: Path
) -> None:
    write_model(model_path, ExplodingModel())
    counter_before = GenerationCounter(StateLayout(settings.state_dir).generation).read()

    with pytest.raises(Exception, match="smoke prediction failed"):
        open_reloader(settings).run()

    layout = StateLayout(settings.state_dir)
    assert sorted(os.listdir(layout.slots)) == [str(old_published)]
    assert GenerationCounter(layout.generation).read() == counter_before
    assert serving_value(settings) == OLD


def test_slot_manifest_records_what_was_published(
    settings: Settings, old_published: int
) -> None:
    store = SlotStore(StateLayout(settings.state_dir))
    manifest = store.read_manifest(old_published)
    assert manifest["format"] == 1
    assert manifest["generation"] == old_published
    assert manifest["descriptor"]["source"] == "local"
    assert manifest["version"] == manifest["descriptor"]["sha256"][:12]
    assert manifest["artifact"] == {"path": "model/model.joblib", "format": "joblib"}
    assert set(manifest["files"]) == {"model/model.joblib"}


def test_corrupt_counter_stops_reload_with_a_named_error(
    settings: Settings, old_published: int
) -> None:
    layout = StateLayout(settings.state_dir)
    layout.generation.write_bytes(b"XXXXXXXX" + struct.pack("<Q", 1))
    with pytest.raises(StoreError, match="generation file"):
        open_reloader(settings)

