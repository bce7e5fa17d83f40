"""Admin calls that race share one reload, on a bounded share of a worker's threads
(inferd.reloading.coalesce). A runner that blocks until the test lets it go stands for
a reload's child; real threads, no timing assumptions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from inferd.common.errors import AdminBusyError, SourceError
from inferd.reloading.coalesce import CoalescingRunner
from inferd.reloading.reload import ReloadResult

WAIT = 30.0


class GatedRunner:
    """Counts its calls; each blocks until `release` is set, then answers (or raises)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.error = error

    def _call(self, what: str) -> ReloadResult:
        self.calls.append(what)
        self.entered.release()
        assert self.release.wait(WAIT)
        if self.error is not None:
            raise self.error
        return ReloadResult("reloaded", "Model reloaded successfully", version=str(len(self.calls)))

    def run(self, unless_version: str | None = None) -> ReloadResult:
        return self._call("run")

    def rollback(self) -> ReloadResult:
        return self._call("rollback")


def in_threads(n: int, target: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    answers: list[Any] = []

    def call() -> None:
        try:
            answers.append(target())
        except Exception as exc:
            answers.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, answers


def joined(runner: CoalescingRunner, callers: int) -> None:
    """Wait until `callers` calls are inside the runner (leading or waiting)."""
    deadline = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if runner._callers == callers:
            return
        deadline.wait(0.01)
    pytest.fail(f"{callers} callers never joined")


def test_callers_that_race_share_one_reload() -> None:
    inner = GatedRunner()
    runner = CoalescingRunner(inner, max_callers=3)
    threads, answers = in_threads(3, runner.run)
    assert inner.entered.acquire(timeout=WAIT)
    joined(runner, 3)
    inner.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert inner.calls == ["run"]
    assert [a.version for a in answers] == ["1", "1", "1"]


def test_a_caller_beyond_the_share_is_told_busy_at_once() -> None:
    inner = GatedRunner()
    runner = CoalescingRunner(inner, max_callers=2)
    threads, answers = in_threads(2, runner.run)
    joined(runner, 2)
    with pytest.raises(AdminBusyError, match="Busy"):
        runner.rollback()  # any admin call counts towards the share
    inner.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert len(answers) == 2 and inner.calls == ["run"]
    # Once answered, the next call starts a reload of its own.
    assert runner.run().version == "2"


def test_an_error_reaches_every_caller_of_the_reload() -> None:
    inner = GatedRunner(error=SourceError("registry down"))
    runner = CoalescingRunner(inner, max_callers=2)
    threads, answers = in_threads(2, runner.run)
    joined(runner, 2)
    inner.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert [str(a) for a in answers] == ["registry down", "registry down"]
    assert inner.calls == ["run"] and runner._callers == 0


def test_a_rollback_does_not_join_a_reload() -> None:
    inner = GatedRunner()
    runner = CoalescingRunner(inner, max_callers=2)
    threads, _ = in_threads(1, runner.run)
    assert inner.entered.acquire(timeout=WAIT)
    more, _ = in_threads(1, runner.rollback)
    assert inner.entered.acquire(timeout=WAIT)
    inner.release.set()
    for thread in threads + more:
        thread.join(WAIT)
    assert sorted(inner.calls) == ["rollback", "run"]


@pytest.mark.parametrize(("threads", "share"), [(1, 1), (2, 1), (4, 2), (8, 4)])
def test_the_share_is_half_the_threads_at_least_one(threads: int, share: int) -> None:
    assert CoalescingRunner.for_threads(GatedRunner(), threads).max_callers == share
