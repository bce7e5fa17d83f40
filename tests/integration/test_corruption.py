"""A slot damaged on disk after it was published, under a real 2-worker server.

The damage is done at the exact moment between the slot's publish (rename, with the
manifest's checksums already written) and the flip of `current`, by the reload's own
checkpoint hook, so every worker meets a slot whose files no longer match their
checksums. Each must keep its model, /health/ must say what is wrong, and `inferd
rollback` must bring every worker back to a good model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from tests.fakes import iris_forest, write_model
from tests.integration.servers import InferdServer, module_server
from tests.support import clean_env, wait_for

pytestmark = pytest.mark.integration


server = module_server("corruption")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def largest_file(slot: Path) -> Path:
    return max((p for p in slot.rglob("*") if p.is_file() and p.name != "manifest.json"),
               key=lambda p: p.stat().st_size)


def publish_damaged(server: InferdServer, damage: Callable[[Path], None]) -> int:
    """Reload a new model on the server's state dir, damaging the slot right after
    it is published; return its generation."""
    assert server.model_path is not None
    settings = Settings(state_dir=server.state_dir, model_source="local",
                        model_path=server.model_path)
    write_model(server.model_path, iris_forest(n_estimators=2, seed=len(server.slot_names())))
    reloader = open_reloader(settings)

    def checkpoint(step: str) -> None:
        if step == "renamed":
            generation = max(int(n) for n in server.slot_names() if n.isdigit())
            victim = largest_file(server.state_dir / "slots" / str(generation))
            victim.chmod(0o600)
            damage(victim)

    reloader.checkpoint = checkpoint
    result = reloader.run()
    assert result.status == "reloaded" and result.generation is not None
    return result.generation


@pytest.mark.parametrize("damage", [truncate, flip_one_byte], ids=["truncated", "altered"])
def test_a_damaged_slot_is_refused_reported_and_rolled_back(
        server: InferdServer, damage: Callable[[Path], None]) -> None:
    serving = set(server.versions(10))
    assert len(serving) == 1
    damaged = publish_damaged(server, damage)
    assert server.current_generation() == damaged

    # Every worker notices the new generation, refuses the slot and keeps its model.
    assert set(server.versions(30)) == serving

    def every_worker_refused() -> bool:
        # Fresh connections reach the workers the kernel picks; keep asking until each
        # has met the slot, logged the refusal and says so in /health/.
        answers = [server.health() for _ in range(6)]
        assert all(a.status_code == 200 and a.json()["ready"] for a in answers)
        for a in answers:
            error = a.json()["details"].get("error", "")
            assert f"slot {damaged}" in error and "checksum" in error, error
        refused = {r["pid"] for r in server.log_records()
                   if r.get("event") == "slot_load_failed"
                   and f"slot {damaged}" in r.get("error", "")}
        return refused == server.worker_pids()

    wait_for(every_worker_refused, 30, "every worker to refuse the damaged slot",
             server.process)

    done = subprocess.run([sys.executable, "-m", "inferd", "rollback"], capture_output=True,
                          text=True, timeout=120,
                          env=clean_env(INFERD_STATE_DIR=str(server.state_dir),
                                        MODEL_SOURCE="local",
                                        MODEL_PATH=str(server.model_path)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] in serving
    assert server.current_generation() > damaged

    def healed() -> bool:
        answers = [server.health().json() for _ in range(12)]
        return all("error" not in a["details"] for a in answers)

    wait_for(healed, 20, "every worker to load the rolled-back slot", server.process)
    assert set(server.versions(20)) == serving
