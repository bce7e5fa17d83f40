"""A model names only its own files: the MLmodel's `pickled_model` (or a symlink) that
points elsewhere on the host is refused before anything reads it, and a worker loads
only files among the slot's checksums. Real slot store and reload on tmp_path; the
registry version is a hand-written MLflow model directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from inferd.common.errors import CorruptStateError, ModelLoadError
from inferd.common.settings import Settings
from inferd.model.loaded import load_slot
from inferd.model.paths import confined_file
from inferd.reloading import sources
from inferd.reloading.reload import Reloader, open_reloader
from tests.fakes import DirectorySource, Tripwire, write_mlflow_dir


def reloader_serving(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
                     model_dir: Path) -> Reloader:
    """A reload of a registry version made of `model_dir`; pickle allowed, so that only
    the path rule can refuse it."""
    monkeypatch.setattr(sources, "make_source", lambda settings: DirectorySource(model_dir))
    return open_reloader(make_settings(model_source="mlflow", allow_pickle=True))


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A pickle elsewhere on the host, which would leave a marker if it were loaded."""
    path = tmp_path / "elsewhere" / "evil.pkl"
    path.parent.mkdir()
    path.write_bytes(cloudpickle.dumps(Tripwire(tmp_path / "unpickled")))
    return path


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "symlink"])
def test_a_model_file_outside_the_model_directory_is_refused_unread(
        tmp_path: Path, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch, forests: tuple[Any, Any], elsewhere: Path,
        how: str) -> None:
    model_dir = tmp_path / "registry"
    if how == "symlink":
        write_mlflow_dir(model_dir, forests[0], pickled_model="linked.pkl")
        os.symlink(elsewhere, model_dir / "linked.pkl")
    else:
        name = str(elsewhere) if how == "absolute" else "../" * 12 + str(elsewhere)[1:]
        write_mlflow_dir(model_dir, forests[0], pickled_model=name)
    reloader = reloader_serving(make_settings, monkeypatch, model_dir)

    with pytest.raises(ModelLoadError, match="outside the model directory"):
        reloader.run()

    assert not (tmp_path / "unpickled").exists(), "the outside pickle was loaded"
    assert reloader.store.current_generation() is None


def test_a_worker_refuses_a_file_added_to_a_published_slot(
        tmp_path: Path, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch, forests: tuple[Any, Any]) -> None:
    model_dir = write_mlflow_dir(tmp_path / "registry", forests[0])
    reloader = reloader_serving(make_settings, monkeypatch, model_dir)
    assert reloader.run().status == "reloaded"
    generation = reloader.store.current_generation()
    assert generation is not None
    slot = reloader.store.layout.slot(generation)
    manifest = reloader.store.read_manifest(generation)
    (slot / "model" / "extra.pkl").write_bytes(b"not checksummed")
    with pytest.raises(CorruptStateError, match="extra.pkl is not among the slot's checksums"):
        load_slot(slot, manifest, True)


@pytest.mark.parametrize("name", ["", "a/../../b", "/etc/passwd", "..", None, 3, "x\0y"])
def test_names_that_are_not_plain_relative_paths(tmp_path: Path, name: object) -> None:
    with pytest.raises(ModelLoadError):
        confined_file(tmp_path, name, "the file")


def test_a_plain_file_and_a_subdirectory_are_fine(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.bin").write_bytes(b"x")
    assert confined_file(tmp_path, "data/m.bin", "the file") == tmp_path / "data" / "m.bin"
    with pytest.raises(ModelLoadError, match="not a regular file"):
        confined_file(tmp_path, "data", "the file")
