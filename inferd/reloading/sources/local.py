"""The `local` source: MODEL_PATH, a model file or an MLflow model directory.

Its descriptor is the SHA-256 of the content (for a directory: of every file's
relative path and bytes), so reloading an unchanged file is a `noop` and an edited
file is a new version, whatever its modification time says.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from inferd.common.errors import SourceError
from inferd.reloading.sources.base import Resolved
from inferd.store.slots import file_sha256, tree_files


def content_hash(path: Path) -> str:
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for rel in tree_files(path):
        digest.update(str(rel).encode() + b"\0")
        digest.update((path / rel).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


class LocalSource:
    kind = "local"

    def __init__(self, path: Path) -> None:
        self.path = path

    def resolve(self) -> Resolved:
        if not self.path.exists():
            raise SourceError(f"MODEL_PATH {self.path} does not exist")
        try:
            sha = content_hash(self.path)
        except OSError as exc:
            raise SourceError(f"cannot read MODEL_PATH {self.path}: {exc}") from exc
        return Resolved(
            descriptor={"source": "local", "path": str(self.path), "sha256": sha},
            version=sha[:12],
            uri=f"file://{self.path}",
        )

    def fetch(self, resolved: Resolved, dest: Path) -> None:
        target = dest / "model"
        try:
            if self.path.is_dir():
                shutil.copytree(self.path, target)
            else:
                target.mkdir()
                shutil.copy2(self.path, target / self.path.name)
        except OSError as exc:
            raise SourceError(f"cannot copy {self.path} into the slot: {exc}") from exc
        if content_hash(target if self.path.is_dir() else target / self.path.name) != (
            resolved.descriptor["sha256"]
        ):
            raise SourceError(
                f"MODEL_PATH {self.path} changed while it was being copied; try again"
            )
