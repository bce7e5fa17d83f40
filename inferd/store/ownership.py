"""Who may write the state directory: the service's own user, and no one else.

Whoever can write anywhere in it decides what the workers load (a pickled model runs
code in every worker), so the check covers more than the root's mode: the root and
every directory below it (slots, staging, cache, metrics...) must be owned by the
user inferd runs as (or by root, who can write anything anyway) and writable by no
group or other user. Symlinks are not followed (`current` points inside; a link
elsewhere is the slot store's to judge). Run by `SlotStore.init`, so at start, in
each worker and in each reload.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from inferd.common.errors import StoreError


def check_private(root: Path, euid: int | None = None) -> None:
    """Raise StoreError naming the first directory under `root` (itself included) that
    another user owns or may write, and how to fix it."""
    euid = os.geteuid() if euid is None else euid
    for directory, subdirs, _ in os.walk(root, onerror=_raise):
        _check_one(Path(directory), euid, root)
        subdirs.sort()  # a stable order: the same directory named each time


def _check_one(directory: Path, euid: int, root: Path) -> None:
    info = os.lstat(directory)
    if info.st_uid not in (euid, 0):
        raise StoreError(
            f"{_what(directory, root)} {directory} is owned by uid {info.st_uid}, not by the "
            f"user inferd runs as (uid {euid}): that user could replace the served model; "
            f"run `chown -R {euid} {root}` or use another directory")
    if info.st_mode & 0o022:
        raise StoreError(
            f"{_what(directory, root)} {directory} is writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod {'' if directory == root else '-R '}"
            f"go-w {root}` or use another directory")


def _what(directory: Path, root: Path) -> str:
    return "state directory" if directory == root else "directory in the state directory"


def _raise(error: OSError) -> None:
    raise StoreError(f"cannot check {error.filename}: {error.strerror or error}") from error
