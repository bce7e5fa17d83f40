"""The MLflow source's download cache on real files: an entry counts only once its
checksums are on disk, torn or damaged entries are fetched again, unfinished
downloads are cleaned up, and entries no slot needs are pruned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferd.common.errors import SourceError
from inferd.store.download_cache import MARKER, DownloadCache

KEY = ("iris-model", "3-abcdef012345")


class Downloads:
    """A stand-in for MLflow's download: writes a small model directory, counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, partial: Path) -> Path:
        self.calls += 1
        model = partial / "artifacts" / "model"
        model.mkdir(parents=True)
        (model / "MLmodel").write_text("flavors: {}\n")
        (model / "model.pkl").write_bytes(b"weights" * 100)
        return model


def test_a_download_is_reused_and_carries_its_checksums(tmp_path: Path) -> None:
    cache, download = DownloadCache(tmp_path / "cache"), Downloads()
    entry = cache.get(KEY, download)
    assert entry == tmp_path / "cache" / "iris-model" / "3-abcdef012345"
    assert sorted(os.listdir(entry)) == [MARKER, "MLmodel", "model.pkl"]
    assert cache.get(KEY, download) == entry
    assert download.calls == 1
    assert not list((tmp_path / "cache").glob(".partial-*"))


@pytest.mark.parametrize("damage", ["no marker", "truncated", "flipped byte", "extra file"])
def test_a_torn_or_damaged_entry_is_downloaded_again(tmp_path: Path, damage: str) -> None:
    cache, download = DownloadCache(tmp_path / "cache"), Downloads()
    entry = cache.get(KEY, download)
    weights = entry / "model.pkl"
    if damage == "no marker":  # what a power cut left before this cache: MLmodel, no data
        (entry / MARKER).unlink()
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[0] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        (entry / "stray.pkl").write_bytes(b"x")

    assert cache.get(KEY, download) == entry
    assert download.calls == 2
    assert weights.read_bytes() == b"weights" * 100


def test_a_failed_download_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path / "cache")

    def no_model(partial: Path) -> Path:
        (partial / "README").write_text("not a model")
        return partial

    with pytest.raises(SourceError, match="no MLmodel"):
        cache.get(KEY, no_model)
    assert os.listdir(tmp_path / "cache") == []


def test_unfinished_downloads_are_cleaned_and_unused_entries_pruned(tmp_path: Path) -> None:
    cache, download = DownloadCache(tmp_path / "cache"), Downloads()
    keys = [("iris-model", f"{v}-norun") for v in (1, 2, 3)] + [("other", "7-norun")]
    for key in keys:
        cache.get(key, download)
    (tmp_path / "cache" / ".partial-0123").mkdir()  # a download killed mid-way

    assert cache.clean_partials() == [".partial-0123"]
    assert cache.prune(keep=keys[1:3]) == ["iris-model/1-norun", "other/7-norun"]
    assert sorted(os.listdir(tmp_path / "cache" / "iris-model")) == ["2-norun", "3-norun"]
