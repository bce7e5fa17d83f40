"""The state directory check covers its owner and every directory below it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferd.common.errors import StoreError
from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.store.ownership import check_private

NOBODY = 65534


def test_a_fresh_state_directory_passes(settings: Settings) -> None:
    open_reloader(settings)
    check_private(settings.state_dir)


def test_a_writable_directory_below_the_root_is_refused(settings: Settings) -> None:
    store = open_reloader(settings).store
    store.layout.slots.chmod(0o777)  # anyone could drop a slot in
    with pytest.raises(StoreError, match=r"slots is writable by other users \(mode 0777\)"):
        open_reloader(settings)


def test_a_group_writable_cache_deep_down_is_refused(settings: Settings) -> None:
    open_reloader(settings)
    deep = settings.state_dir / "cache" / "iris-model" / "3"
    deep.mkdir(parents=True, mode=0o700)
    deep.chmod(0o775)
    with pytest.raises(StoreError, match=f"{deep} is writable by other users"):
        open_reloader(settings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root-owned directories are allowed")
def test_a_directory_owned_by_another_user_is_refused(settings: Settings, tmp_path: Path) -> None:
    open_reloader(settings)
    slots = settings.state_dir / "slots"
    # As the test's own user, the same rule read the other way round: "inferd" runs
    # as someone who does not own what it finds there.
    with pytest.raises(StoreError, match=f"owned by uid {slots.stat().st_uid}"):
        check_private(settings.state_dir, euid=NOBODY if os.geteuid() != NOBODY else 1000)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away")
def test_a_state_directory_given_to_another_user_is_refused(settings: Settings) -> None:
    open_reloader(settings)
    os.chown(settings.state_dir / "slots", NOBODY, NOBODY)
    with pytest.raises(StoreError, match=f"owned by uid {NOBODY}, not by the user"):
        open_reloader(settings)
