"""A state directory that fills up or turns read-only under a running 2-worker server,
and one that is unusable at start.

The full and read-only cases need a filesystem of their own: the test mounts a small
tmpfs (root only; skipped with the reason where mounting is not allowed).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import iris_forest, write_model
from tests.integration.servers import InferdServer, start_inferd, stop_inferd
from tests.support import clean_env, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TMPFS_BYTES = 3 * 1024 * 1024


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "disk"
    target.mkdir()
    done = _mount("-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(target))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def serve_from(small_disk: Path, tmp_path: Path) -> InferdServer:
    model_path = write_model(tmp_path / "models" / "model.joblib", iris_forest(n_estimators=2))
    server = start_inferd(tmp_path, {
        "MODEL_SOURCE": "local", "MODEL_PATH": str(model_path),
        "INFERD_STATE_DIR": str(small_disk / "state"),
        # Keep the metrics files off the small disk: this test fills the slot store.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    })
    return server


def leftovers(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "slots").iterdir() if not p.name.isdigit())


def test_a_full_disk_fails_the_reload_cleanly_and_the_old_model_serves(
        small_disk: Path, tmp_path: Path) -> None:
    server = serve_from(small_disk, tmp_path)
    try:
        before = server.versions(10)
        generation = server.current_generation()
        slots = server.slot_names()
        assert server.model_path is not None
        # A file far larger than the tmpfs: the copy into staging runs out of space
        # (before validation, which would refuse this array anyway).
        write_model(server.model_path, np.zeros(1_000_000))
        assert server.model_path.stat().st_size > TMPFS_BYTES
        resp = server.admin("reload")
        assert resp.status_code == 500, resp.text
        assert resp.json()["detail"].startswith("Reload failed: ")
        assert "space" in resp.json()["detail"].lower()
        assert server.current_generation() == generation
        assert server.slot_names() == slots
        assert leftovers(server.state_dir) == []
        assert set(server.versions(20)) == set(before)
        assert server.health().json()["ready"] is True
        # Room again: the next reload succeeds.
        write_model(server.model_path, iris_forest(n_estimators=3, seed=5))
        assert server.admin("reload").json()["status"] == "reloaded"
    finally:
        stop_inferd(server)


def test_a_read_only_slot_store_fails_the_reload_and_the_old_model_serves(
        small_disk: Path, tmp_path: Path) -> None:
    server = serve_from(small_disk, tmp_path)
    slots = str(server.state_dir / "slots")
    try:
        before = server.versions(10)
        generation = server.current_generation()
        # The workers hold the counter file open for writing, so the whole filesystem
        # cannot turn read-only under them; the slot store, a bind mount of its own, can.
        for args in (("--bind", slots, slots), ("-o", "remount,bind,ro", slots)):
            done = _mount(*args)
            assert done.returncode == 0, done.stderr
        assert server.model_path is not None
        write_model(server.model_path, iris_forest(n_estimators=3, seed=9))
        resp = server.admin("reload")
        assert resp.status_code == 500, resp.text
        assert "read-only" in resp.json()["detail"].lower()
        assert server.current_generation() == generation
        assert set(server.versions(20)) == set(before)
        subprocess.run(["umount", slots], capture_output=True, timeout=30, check=True)
        assert server.admin("reload").json()["status"] == "reloaded"
        assert leftovers(server.state_dir) == []
    finally:
        subprocess.run(["umount", slots], capture_output=True, timeout=30)
        stop_inferd(server)


def test_an_unusable_state_dir_at_start_is_one_clear_error_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("")
    env = clean_env(INFERD_STATE_DIR=str(not_a_dir), MODEL_SOURCE="local",
                    MODEL_PATH=str(tmp_path / "none.joblib"),
                    INFERD_BIND=f"127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-m", "inferd", "serve"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines()
              if "state-is-a-file" in line and ("error" in line.lower() or "critical" in line)]
    assert errors, done.stderr
    assert "Traceback" not in done.stderr
