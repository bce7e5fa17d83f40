"""The refresh leader: election with a real flock held by a real process, and its
rounds run in this process (the in-process Reloader is the runner) on a real
state dir with the real local source."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inferd.common.settings import Settings
from inferd.reloading.refresh import (
    LeaderLock,
    RefreshLeader,
    jittered,
    refresh_mode,
    refresh_status,
)
from inferd.reloading.reload import open_reloader
from inferd.reloading.sources.local import content_hash
from tests.fakes import ConstantModel, write_model
from tests.support import clean_env, wait_for

INTERVAL = 2.0


def leader_for(settings: Settings) -> tuple[RefreshLeader, Any]:
    reloader = open_reloader(settings)
    return RefreshLeader(settings, reloader, reloader.store, rng=lambda: 0.5), reloader


def test_the_lock_passes_to_another_process_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "refresh.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from inferd.reloading.refresh import LeaderLock; "
         f"assert LeaderLock(Path({str(path)!r})).try_acquire(); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        ours = LeaderLock(path)
        assert ours.try_acquire() is False
        assert LeaderLock.holder_pid(path) == holder.pid
    finally:
        holder.kill()
        holder.wait(10)
    assert wait_for(ours.try_acquire, 5, "the lock after its holder died")
    assert LeaderLock.holder_pid(path) != holder.pid
    ours.release()


def test_only_one_leader_at_a_time(make_settings: Callable[..., Settings],
                                   model_path: Path) -> None:
    write_model(model_path, ConstantModel(1))
    settings = make_settings(auto_refresh_seconds=INTERVAL)
    first, _ = leader_for(settings)
    second, _ = leader_for(settings)
    assert first.tick() == INTERVAL  # became leader, published the first slot
    assert first.lock.held and second.tick() == INTERVAL and not second.lock.held
    first.lock.release()
    assert second.tick() == INTERVAL and second.lock.held
    second.lock.release()


def test_polls_follow_the_source_and_keep_a_manual_rollback(
        make_settings: Callable[..., Settings], model_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(auto_refresh_seconds=INTERVAL)
    leader, reloader = leader_for(settings)
    write_model(model_path, ConstantModel(1))
    v1 = content_hash(model_path)[:12]
    leader.tick()  # no slot yet: bootstrap
    assert reloader.store.current_manifest()["version"] == v1

    write_model(model_path, ConstantModel(2))
    v2 = content_hash(model_path)[:12]
    with caplog.at_level(logging.INFO, logger="inferd.refresh"):
        assert leader.tick() == INTERVAL
    applied = [r for r in caplog.records if r.getMessage() == "Automatic model reload applied"]
    assert len(applied) == 1
    assert (applied[0].version, applied[0].uri) == (v2, f"file://{model_path}")  # type: ignore[attr-defined]
    assert reloader.store.current_manifest()["version"] == v2
    generation = reloader.store.current_generation()

    leader.tick()  # nothing moved: no reload at all
    assert reloader.store.current_generation() == generation

    reloader.rollback()  # the operator undoes v2; the source still names v2
    for _ in range(2):
        leader.tick()
    assert reloader.store.current_manifest()["version"] == v1
    assert refresh_status(settings)["last_seen_version"] == v2

    write_model(model_path, ConstantModel(3))  # the source moves: the poller follows
    leader.tick()
    assert reloader.store.current_manifest()["version"] == content_hash(model_path)[:12]
    leader.lock.release()


def test_backs_off_while_the_source_fails_then_fetches_the_first_model(
        make_settings: Callable[..., Settings], model_path: Path) -> None:
    leader, reloader = leader_for(make_settings(auto_refresh_seconds=INTERVAL))  # no model yet
    delays = [leader.tick() for _ in range(5)]
    assert delays == [INTERVAL * 2, INTERVAL * 4, INTERVAL * 8, INTERVAL * 8, INTERVAL * 8]
    assert reloader.store.current_generation() is None

    write_model(model_path, ConstantModel(1))  # the source is back
    assert leader.tick() == INTERVAL
    assert reloader.store.current_manifest()["version"] == content_hash(model_path)[:12]
    leader.lock.release()


def test_a_pinned_version_only_bootstraps(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(model_source="mlflow", mlflow_model_version="3",
                             auto_refresh_seconds=INTERVAL)
    assert refresh_mode(settings) == "pinned"
    assert refresh_mode(make_settings()) == "off"
    local, _ = leader_for(make_settings(auto_refresh_seconds=None))
    write_model(local.settings.model_path, ConstantModel(1))
    assert local.tick() is not None  # no slot: the leader fetches one even with refresh off
    assert local.tick() is None  # then it has nothing left to do
    local.lock.release()


def test_jitter_stays_within_ten_percent() -> None:
    assert jittered(10.0, 0.0) == pytest.approx(9.0)
    assert jittered(10.0, 0.999999) == pytest.approx(11.0, abs=1e-4)
    assert jittered(10.0, 0.5) == pytest.approx(10.0)
