"""The slot store: immutable published slots, the `current` symlink and reconciliation.

Every mutating method here must be called by the process holding the reload lock
(`SlotStore.lock()`); readers (workers) only call `current_generation` and
`read_manifest`, which are safe at any time because a published slot never changes
and `current` is replaced with one rename(2).

Publishing a slot, in order (a crash between any two steps is repaired by `reconcile`):

1. `staging()` makes `slots/.staging-<random>/`; the source writes the model there;
2. `publish()` writes `manifest.json` with a checksum of every file, fsyncs, and
   renames the directory to `slots/<next generation>`;
3. `flip()` points `current` at it (new symlink + rename over the old one);
4. the caller bumps the generation counter, which is what workers watch.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from inferd.common.errors import (
    CorruptStateError,
    NoPreviousSlotError,
    ReloadBusyError,
    StoreError,
)
from inferd.store import generation as generation_file
from inferd.store.layout import (
    CURRENT_TMP_PREFIX,
    MANIFEST_NAME,
    STAGING_PREFIX,
    StateLayout,
)
from inferd.store.ownership import check_private

MANIFEST_FORMAT = 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path, files: Iterable[str]) -> None:
    """fsync `files` (relative to `root`), then their directories and `root`, so that
    what is renamed or marked complete next is on disk first."""
    names = list(files)
    for name in names:
        with open(root / name, "rb") as fh:
            os.fsync(fh.fileno())
    for directory in {root, *((root / name).parent for name in names)}:
        _fsync_dir(directory)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_files(root: Path) -> list[Path]:
    """Every regular file under root, as sorted relative paths."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def verify_files(slot_dir: Path, manifest: dict[str, Any]) -> None:
    """Raise CorruptStateError if a file listed in the manifest is missing or altered,
    or if the slot holds a file the manifest does not list: a worker loads only
    checksummed files."""
    listed = manifest.get("files", {})
    unlisted = [str(rel) for rel in tree_files(slot_dir)
                if str(rel) != MANIFEST_NAME and str(rel) not in listed]
    if unlisted:
        raise CorruptStateError(
            f"slot {slot_dir.name}: file {unlisted[0]} is not among the slot's checksums "
            "(added after it was published)")
    for rel, expected in listed.items():
        path = slot_dir / rel
        if not path.is_file():
            raise CorruptStateError(f"slot {slot_dir.name}: file {rel} is missing")
        if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
            raise CorruptStateError(
                f"slot {slot_dir.name}: file {rel} does not match its checksum in the "
                "manifest (altered or truncated on disk); run `inferd rollback`"
            )


class SlotStore:
    def __init__(self, layout: StateLayout, retention: int = 3) -> None:
        self.layout = layout
        self.retention = max(2, retention)

    # -- setup --------------------------------------------------------------------------

    def init(self) -> None:
        """Create the state directory (0700) and the counter file if missing; refuse a
        directory another user owns or may write, anywhere in it (`store.ownership`)."""
        root = self.layout.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"state directory {root} is not a directory "
                             "(set INFERD_STATE_DIR to a directory)")
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.layout.slots.mkdir(mode=0o700, exist_ok=True)
            generation_file.create(self.layout.generation)
        except OSError as exc:
            raise StoreError(
                f"state directory {root} cannot be used: {exc.strerror or exc} "
                "(set INFERD_STATE_DIR to a writable directory)"
            ) from exc
        # Whoever can write here decides what the workers load (a pickle runs code).
        check_private(root)

    @contextlib.contextmanager
    def lock(self, timeout: float = 120.0) -> Iterator[None]:
        """Hold the reload lock. flock(2) underneath: the kernel frees it if we die."""
        lock = FileLock(str(self.layout.lock), timeout=timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise ReloadBusyError(
                f"another reload held {self.layout.lock} for more than {timeout:g}s"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    # -- reading (any process, any time) --------------------------------------------------

    def current_generation(self) -> int | None:
        try:
            target = os.readlink(self.layout.current)
        except FileNotFoundError:
            return None
        name = Path(target).name
        if not name.isdigit():
            raise CorruptStateError(
                f"{self.layout.current} points to {target!r}, expected slots/<generation>"
            )
        return int(name)

    def published(self) -> list[int]:
        if not self.layout.slots.is_dir():
            return []
        return sorted(int(p.name) for p in self.layout.slots.iterdir() if p.name.isdigit())

    def read_manifest(self, generation: int) -> dict[str, Any]:
        path = self.layout.manifest(generation)
        try:
            manifest = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise CorruptStateError(f"slot {generation} has no {MANIFEST_NAME}") from exc
        except ValueError as exc:
            raise CorruptStateError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise CorruptStateError(f"{path} is not an inferd manifest of format 1")
        return manifest

    def current_manifest(self) -> dict[str, Any] | None:
        generation = self.current_generation()
        return None if generation is None else self.read_manifest(generation)

    # -- writing (reload-lock holder only) ------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging directory, removed again unless `publish` consumed it."""
        path = self.layout.slots / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        try:
            path.mkdir(mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create a staging slot in {self.layout.slots}: {exc}") from exc
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def next_generation(self, counter_value: int) -> int:
        return max([counter_value, *self.published()]) + 1

    def publish(self, staging: Path, manifest: dict[str, Any], generation: int) -> Path:
        """Seal `staging` as `slots/<generation>`: manifest with checksums, fsync, rename."""
        files = {}
        for rel in tree_files(staging):
            path = staging / rel
            files[str(rel)] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        full = {
            **manifest,
            "format": MANIFEST_FORMAT,
            "generation": generation,
            "published_at": time.time(),
            "files": files,
        }
        try:
            manifest_path = staging / MANIFEST_NAME
            with open(manifest_path, "wb") as fh:
                fh.write(json.dumps(full, indent=2, sort_keys=True).encode())
                fh.flush()
                os.fsync(fh.fileno())
            fsync_tree(staging, files)
            target = self.layout.slot(generation)
            # rename(2) of a directory is atomic: `slots/<g>` either does not exist or is
            # complete, so no reader can see a half-written slot.
            os.rename(staging, target)
            _fsync_dir(self.layout.slots)
        except OSError as exc:
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or exc)
            raise StoreError(f"cannot publish slot {generation}: {reason}") from exc
        return target

    def flip(self, generation: int) -> None:
        """Point `current` at `slots/<generation>` with one atomic rename."""
        tmp = self.layout.root / f"{CURRENT_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.symlink(f"slots/{generation}", tmp)
            # rename(2) over the old symlink is atomic: a reader sees the old or the new
            # target, never a missing `current`.
            os.replace(tmp, self.layout.current)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot switch {self.layout.current}: {exc}") from exc
        # Once `current` has moved, the caller must bump the counter whatever happens,
        # or running workers would stay on the old slot; a failed directory fsync only
        # weakens durability across a power cut, so it is not an error here.
        with contextlib.suppress(OSError):
            _fsync_dir(self.layout.root)

    def activate(self, generation: int, counter: generation_file.GenerationCounter,
                 checkpoint: Callable[[str], None] | None = None) -> int:
        """Make slot `generation` the one every worker serves: flip `current`, then bump
        the counter past every value it had. The one place both happen, in this order:
        a worker that sees the bump always finds `current` already moved. Called by a
        reload (under the lock) and by `reconcile`. Returns the counter's new value."""
        self.flip(generation)
        if checkpoint is not None:
            checkpoint("flipped")
        raised = max(generation, counter.read() + 1)
        counter.bump(raised)
        if checkpoint is not None:
            checkpoint("bumped")
        return raised

    def prune(self) -> list[int]:
        """Delete published slots older than the newest `retention`; return what went."""
        current = self.current_generation()
        kept = [g for g in self.published() if current is None or g <= current]
        doomed = kept[: max(0, len(kept) - self.retention)]
        for generation in doomed:
            shutil.rmtree(self.layout.slot(generation), ignore_errors=True)
        return doomed

    def previous_generation(self) -> int:
        """The newest slot before `current` that holds a different model."""
        current = self.current_generation()
        if current is None:
            raise NoPreviousSlotError("no model is published yet, so there is nothing to undo")
        descriptor = self.read_manifest(current).get("descriptor")
        for generation in reversed(self.published()):
            if generation >= current:
                continue
            try:
                manifest = self.read_manifest(generation)
            except CorruptStateError:
                continue
            if manifest.get("descriptor") != descriptor:
                return generation
        raise NoPreviousSlotError(
            f"no earlier slot with a different model is kept (current is {current}; "
            f"kept: {', '.join(map(str, self.published()))})"
        )

    def copy_into(self, generation: int, staging: Path) -> dict[str, Any]:
        """Fill `staging` with slot `generation`'s files (hard links); return its manifest."""
        source = self.layout.slot(generation)
        manifest = self.read_manifest(generation)
        verify_files(source, manifest)
        for rel in manifest["files"]:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Published files are never modified, so sharing their inodes is safe.
                os.link(source / rel, dest)
            except OSError:
                shutil.copy2(source / rel, dest)
        return manifest

    def reconcile(self, counter: generation_file.GenerationCounter) -> list[str]:
        """Repair what a crash mid-reload can leave behind; return what was done.

        Holds for any crash point: afterwards `current` names a complete slot (or
        nothing when no slot exists), no staging or temporary file is left, every
        slot newer than `current` (renamed but never made current) is gone, and the
        counter is at least `current`'s generation, so every worker moves to it.
        """
        actions: list[str] = []
        for stray in self.layout.slots.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stray, ignore_errors=True)
            actions.append(f"removed unfinished staging directory {stray.name}")
        for stray in [*self.layout.root.glob(f"{CURRENT_TMP_PREFIX}*"),
                      *self.layout.root.glob(".generation.*.tmp")]:
            stray.unlink(missing_ok=True)
            actions.append(f"removed temporary file {stray.name}")

        current = self._valid_current()
        raised: int | None = None
        if current is None:
            complete = [g for g in self.published() if self._is_complete(g)]
            if complete:
                current = complete[-1]
                raised = self.activate(current, counter)
                actions.append(f"pointed current at slot {current}")
            elif self.layout.current.is_symlink():
                self.layout.current.unlink()
                actions.append("removed dangling current symlink")
        for generation in self.published():
            if current is None or generation > current:
                shutil.rmtree(self.layout.slot(generation), ignore_errors=True)
                actions.append(f"removed slot {generation}, published but never made current")
        if current is not None and counter.read() < current:
            # Flipped, then killed before the bump: the counter catches up, or running
            # workers keep serving what they have while new ones load something else.
            counter.bump(raised := current)
        if raised is not None:
            actions.append(f"raised generation to {raised}")
        return actions

    def _is_complete(self, generation: int) -> bool:
        try:
            self.read_manifest(generation)
        except CorruptStateError:
            return False
        return True

    def _valid_current(self) -> int | None:
        try:
            generation = self.current_generation()
        except CorruptStateError:
            return None
        if generation is None or not self._is_complete(generation):
            return None
        return generation
