"""Reloads in a child process (`inferd.reloading.child`, `child_main`): real child processes, a real
state dir, the real local source; the registry that hangs is a real loopback socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inferd.common import logs
from inferd.common.errors import InferdError, NoPreviousSlotError, ReloadProcessError, SourceError
from inferd.common.settings import Settings, load_settings
from inferd.reloading.child import ChildReloads
from inferd.reloading.reload import open_reloader
from inferd.reloading.sources.local import content_hash
from tests.fakes import StalledRegistry, write_model
from tests.support import clean_env

Env = Callable[..., Settings]


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch, state_dir: Path, model_path: Path) -> Env:
    """Put settings in this process's environment and return the parsed Settings (the
    child receives them from ChildReloads, rendered; the script test reads them here)."""

    def apply(**variables: str) -> Settings:
        env = clean_env(**{"INFERD_STATE_DIR": str(state_dir), "MODEL_SOURCE": "local",
                           "MODEL_PATH": str(model_path), "INFERD_LOG_LEVEL": "warning",
                           **variables})
        for key in list(os.environ):
            if key not in env:
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_settings()

    return apply


def test_reload_noop_and_rollback_through_a_child(child_env: Env, model_path: Path,
                                                   forests: tuple[Any, Any]) -> None:
    settings = child_env()
    runner = ChildReloads(settings)
    write_model(model_path, forests[0])
    first = runner.run()
    assert (first.status, first.version) == ("reloaded", content_hash(model_path)[:12])
    assert first.resolved_version == first.version and first.generation == 1

    again = runner.run()
    assert (again.status, again.version, again.resolved_version) == (
        "noop", None, first.version)
    # The poller's form: the source still names what it last saw there.
    assert runner.run(unless_version=first.version).status == "unchanged"

    with pytest.raises(NoPreviousSlotError):  # mapped back to its own class: a 409
        runner.rollback()


def test_a_failure_in_the_child_keeps_its_error_class(child_env: Env) -> None:
    runner = ChildReloads(child_env())  # MODEL_PATH does not exist
    with pytest.raises(SourceError, match="does not exist"):
        runner.run()


def test_a_stalled_registry_is_cut_off_at_the_reload_timeout(child_env: Env) -> None:
    with StalledRegistry() as registry:
        # MLflow's own timeouts (15 s a request, retried) are longer than the bound.
        settings = child_env(MODEL_SOURCE="mlflow", MLFLOW_TRACKING_URI=registry.url,
                             INFERD_RELOAD_TIMEOUT="2")
        started = time.monotonic()
        with pytest.raises(ReloadProcessError, match=r"did not finish within 2s") as failed:
            ChildReloads(settings).run()
        elapsed = time.monotonic() - started
    assert 2 <= elapsed < 10, elapsed
    assert registry.url in str(failed.value)
    assert isinstance(failed.value, InferdError)


def test_a_worker_reloads_without_importing_mlflow(child_env: Env, model_path: Path,
                                                   forests: tuple[Any, Any],
                                                   tmp_path: Path) -> None:
    """The worker's whole app with its background threads, a reload through the admin
    endpoint (run by a child) and a registry check, in a fresh interpreter: none of
    it imports MLflow into the worker."""
    child_env()
    write_model(model_path, forests[0])
    registry = tmp_path / "mlflow.db"
    registry.touch()
    script = (
        "import sys, dataclasses; from falcon import testing; from inferd.app import create_app; "
        "from inferd.serving.service import WorkerService; "
        "from inferd.reloading.registry.health import check_registry; "
        "from inferd.common.settings import load_settings; s = load_settings(); "
        "c = testing.TestClient(create_app(WorkerService.open(s).start())); "
        "r = c.simulate_post('/admin/reload'); assert r.status_code == 200, r.text; "
        "p = c.simulate_post('/predict/', json={'features': [[1, 2, 3, 4]]}); "
        "assert p.status_code == 200; "
        "c.simulate_get('/health/'); "
        f"h = check_registry(dataclasses.replace(s, model_source='mlflow', "
        f"mlflow_tracking_uri='sqlite:///{registry}')); assert h.status == 'ok', h; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("cid", ["req-42", "-looks-like-an-option"])
def test_the_child_gets_its_parents_settings_not_the_environment(
        child_env: Env, make_settings: Callable[..., Settings], model_path: Path,
        state_dir: Path, tmp_path: Path, forests: tuple[Any, Any],
        capfd: pytest.CaptureFixture[str], cid: str) -> None:
    """Settings built in code reach the child as they are; the shell's variables,
    here pointing elsewhere, do not. The request's correlation id reaches it too."""
    child_env(MODEL_PATH=str(tmp_path / "nowhere.pkl"),
              INFERD_STATE_DIR=str(tmp_path / "elsewhere"))
    settings = make_settings(log_level="info")
    write_model(model_path, forests[0])
    open_reloader(settings)  # creates the store; a stray staging dir to repair:
    (state_dir / "slots" / ".staging-leftover").mkdir()
    token = logs.correlation_id.set(cid)  # the client chose it: anything at all
    try:
        result = ChildReloads(settings).run()
    finally:
        logs.correlation_id.reset(token)
    assert (result.status, result.generation) == ("reloaded", 1)
    assert open_reloader(settings).store.current_generation() == 1
    assert not (tmp_path / "elsewhere").exists()
    repaired = [json.loads(line) for line in capfd.readouterr().err.splitlines()
                if '"Slot store repaired"' in line]
    assert [line["correlation_id"] for line in repaired] == [cid]


def test_a_child_killed_between_flip_and_bump_is_repaired_at_once(
        child_env: Env, model_path: Path, forests: tuple[Any, Any], tmp_path: Path) -> None:
    """Without the repair, `current` names the new slot while the counter still names
    the old one: running workers keep the old model, new ones load the new one, until
    some later reload reconciles."""
    step_file = tmp_path / "kill-at"
    settings = child_env(INFERD_TEST_FAULT_INJECTION_FILE=str(step_file))
    runner = ChildReloads(settings)
    write_model(model_path, forests[0])
    assert runner.run().generation == 1
    write_model(model_path, forests[1])
    step_file.write_text("flipped")

    with pytest.raises(ReloadProcessError, match="without an answer"):
        runner.run()

    store = open_reloader(settings).store
    assert store.current_generation() == 2, "the child died after the flip"
    assert open_reloader(settings).counter.read() == 2, "the counter caught up at once"
