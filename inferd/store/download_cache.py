"""The download cache of the MLflow source (MODEL_CACHE_DIR, default `<state>/cache`).

    <cache>/<model name>/<version>-<run id[:12]>/   a complete download: the MLflow
                                                   model directory (MLmodel, ...) and
    <cache>/<model name>/<version>-<run id[:12]>/.inferd-complete.json
                                                   {"format": 1, "files": {relative
                                                   path: {"size", "sha256"}}}
    <cache>/.partial-<uuid>/                       a download under way

An entry is complete only with its marker, and the marker is written last: the
download lands in a `.partial-*` directory, every file's checksum goes into the
marker, the files, the marker and the directories are fsynced, and only then is the
directory renamed into place (rename(2): the entry is either absent or whole). A
power cut can therefore leave a partial directory, never an entry that looks complete
and is not; `get` checks every file against the marker anyway (a few ms for a model
of tens of MB, read from the page cache by the copy that follows) and downloads an
entry again that does not match.

Housekeeping, always inside the reload lock (one download at a time), by the
`Reloader`: `clean_partials` removes what a killed download left (at start-up and
before every reload), and `prune` removes every entry no kept slot was made from, so
the cache holds the versions that `inferd rollback` can go back to and no more.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from inferd.common.errors import SourceError
from inferd.store.slots import file_sha256, fsync_tree, tree_files

MARKER = ".inferd-complete.json"
PARTIAL_PREFIX = ".partial-"
FORMAT = 1

# Fills the directory it is given and returns the model directory inside it.
Download = Callable[[Path], Path]


def entry_key(descriptor: dict[str, Any]) -> tuple[str, str] | None:
    """(model name, entry directory name) of an MLflow slot's descriptor; None for
    another source."""
    if descriptor.get("source") != "mlflow":
        return None
    run = (descriptor.get("run_id") or "norun")[:12]
    return str(descriptor["name"]), f"{descriptor['version']}-{run}"


class DownloadCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: tuple[str, str], download: Download) -> Path:
        """The complete entry for `key`, downloading it first if it is missing or does
        not match its marker."""
        entry = self.root / key[0] / key[1]
        if _is_complete(entry):
            return entry
        partial = self.root / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
        try:
            partial.mkdir(parents=True, mode=0o700)
            model_dir = download(partial)
            _seal(model_dir)
            entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.rmtree(entry, ignore_errors=True)
            os.rename(model_dir, entry)
            fsync_tree(entry.parent, [])
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return entry

    def clean_partials(self) -> list[str]:
        """Remove the directories of downloads that never finished; their names."""
        gone = []
        for stray in sorted(self.root.glob(f"{PARTIAL_PREFIX}*")):
            shutil.rmtree(stray, ignore_errors=True)
            gone.append(stray.name)
        return gone

    def prune(self, keep: Iterable[tuple[str, str]]) -> list[str]:
        """Remove every entry whose key is not in `keep` (the slots still on disk);
        return them as `name/entry`."""
        wanted = set(keep)
        gone = []
        for model in sorted(p for p in self.root.glob("*") if p.is_dir()):
            if model.name.startswith(PARTIAL_PREFIX):
                continue
            for entry in sorted(p for p in model.iterdir() if p.is_dir()):
                if (model.name, entry.name) not in wanted:
                    shutil.rmtree(entry, ignore_errors=True)
                    gone.append(f"{model.name}/{entry.name}")
            if not any(model.iterdir()):
                model.rmdir()
        return gone


def _seal(model_dir: Path) -> None:
    """Checksum every file, fsync them, then write and fsync the marker: the entry
    is complete from the moment the marker is on disk, and not before."""
    if not (model_dir / "MLmodel").is_file():
        raise SourceError("the downloaded artifacts contain no MLmodel file")
    files = {str(rel): {"size": (model_dir / rel).stat().st_size,
                        "sha256": file_sha256(model_dir / rel)}
             for rel in tree_files(model_dir)}
    fsync_tree(model_dir, files)
    marker = model_dir / MARKER
    with open(marker, "wb") as fh:
        fh.write(json.dumps({"format": FORMAT, "files": files}, sort_keys=True).encode())
        fh.flush()
        os.fsync(fh.fileno())
    fsync_tree(model_dir, [])


def _is_complete(entry: Path) -> bool:
    """The entry's files are exactly those its marker lists, with their checksums."""
    try:
        marker = json.loads((entry / MARKER).read_bytes())
        files = marker["files"]
        present = {str(rel) for rel in tree_files(entry)} - {MARKER}
        if marker.get("format") != FORMAT or present != set(files):
            return False
        return all((entry / rel).stat().st_size == f["size"]
                   and file_sha256(entry / rel) == f["sha256"] for rel, f in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
