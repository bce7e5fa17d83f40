"""Artifact paths a model's own files name, confined to the model directory.

An MLmodel file is written by whoever registered the version, and it names the files
a flavor loads (`pickled_model`, `data`, ...). Joined as given, `../../x` or `/x`
would load a file from anywhere on the host: never validated, never among the slot's
checksums. So every such name goes through `confined_file` before anything reads the
file: a relative path with no `..`, that resolves (symlinks followed) to a regular
file inside the model directory. A slot's checksums cover every regular file in it
(`inferd.store.slots`), so a confined file is a checksummed one.

Called while locating a model's files (`inferd.model.artifact`), in the reload child
before validation and in every worker before loading.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from inferd.common.errors import ModelLoadError


def confined_file(model_dir: Path, name: object, what: str) -> Path:
    """`model_dir / name`, or ModelLoadError if `name` (what the model's files call
    `what`) is not a plain relative path to a regular file inside `model_dir`."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ModelLoadError(f"{what} must be a file name inside the model directory, "
                             f"got {name!r}")
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or name.startswith("\\"):
        raise ModelLoadError(
            f"{what} {name!r} points outside the model directory; refusing to load it "
            "(a model names only its own files)")
    root = model_dir.resolve()
    candidate = model_dir / relative
    try:
        resolved = candidate.resolve(strict=True)
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise ModelLoadError(f"{what} {name!r} is missing from the model directory") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ModelLoadError(f"{what} {name!r} cannot be read: {exc}") from None
    if not resolved.is_relative_to(root):
        raise ModelLoadError(
            f"{what} {name!r} is a link to a file outside the model directory; refusing "
            "to load it")
    if not stat.S_ISREG(mode):
        raise ModelLoadError(f"{what} {name!r} is not a regular file")
    return candidate
