"""Start-up empties PROMETHEUS_MULTIPROC_DIR only when it holds nothing but metric files."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from inferd.common.errors import ConfigError
from inferd.common.settings import Settings
from inferd.server.lifecycle import prepare_metrics_dir

METRIC_FILES = ("counter_41.db", "gauge_livesum_41.db", "gauge_all_7.db", "histogram_41.db")


@pytest.fixture(autouse=True)
def _keep_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # prepare_metrics_dir exports the variable; the test's process must not keep it.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_metric_files_of_the_last_run_are_removed(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    for name in METRIC_FILES:
        (directory / name).write_bytes(b"\0" * 8)
    assert prepare_metrics_dir(make_settings(prometheus_multiproc_dir=directory)) == directory
    assert os.listdir(directory) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)


@pytest.mark.parametrize("stray", ["notes.txt", "slots/", "counter_1.db.bak"])
def test_a_directory_holding_anything_else_is_refused_and_left_alone(
        make_settings: Callable[..., Settings], tmp_path: Path, stray: str) -> None:
    directory = tmp_path / "important"
    directory.mkdir()
    (directory / "counter_41.db").write_bytes(b"\0" * 8)
    if stray.endswith("/"):
        (directory / stray).mkdir()
    else:
        (directory / stray).write_text("keep me")
    before = sorted(os.listdir(directory))

    with pytest.raises(ConfigError, match="not metric files") as refused:
        prepare_metrics_dir(make_settings(prometheus_multiproc_dir=directory))

    assert sorted(os.listdir(directory)) == before, "nothing deleted"
    assert "PROMETHEUS_MULTIPROC_DIR" in str(refused.value)
    assert stray.rstrip("/") in str(refused.value)


def test_the_state_directory_itself_is_refused(settings: Settings) -> None:
    from inferd.reloading.reload import open_reloader

    open_reloader(settings)  # slots/, generation, ...
    with pytest.raises(ConfigError, match="not metric files"):
        prepare_metrics_dir(dataclasses.replace(settings,
                                                prometheus_multiproc_dir=settings.state_dir))
    assert (settings.state_dir / "generation").exists()
