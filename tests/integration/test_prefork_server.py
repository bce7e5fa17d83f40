"""The master opens the workers' service and loads a compiled slot before it forks
(inferd/server/prefork.py), under real gunicorn with 2 workers and a real SIGKILL:

- each worker takes the master's model as its own: it logs it, counts it in its gauges
  and load-time histogram once, and maps the slot's arrays;
- the master lets the slot go once its workers are forked, so it maps no slot file;
- after a reload, a worker forked to replace a killed one serves the new model.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.fakes import iris_forest, write_model
from tests.integration.servers import start_local, stop_inferd, wait_for

TOKEN = "prefork-secret"


def mapped_slot_files(pid: int, state_dir: Path) -> set[str]:
    slots = str(state_dir.resolve() / "slots")
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split(maxsplit=5)[5].strip() for line in maps
                if len(line.split(maxsplit=5)) == 6 and slots in line}


def test_workers_take_over_the_masters_model_and_a_replacement_loads_its_own(
        tmp_path: Path) -> None:
    server = start_local(tmp_path, iris_forest(n_estimators=3), admin_token=TOKEN)
    try:
        master = server.process.proc.pid
        preloaded = [r for r in server.log_records() if r.get("event") == "slot_preloaded"]
        assert [(r["pid"], r["generation"]) for r in preloaded] == [(master, 1)]
        assert server.health().json()["model"]["form"] == "compiled"
        assert mapped_slot_files(master, server.state_dir) == set()
        for pid in server.worker_pids():
            assert mapped_slot_files(pid, server.state_dir), f"worker {pid} maps no array"
        scrape = server.scrape()
        assert scrape["inferd_generation_oldest{}"] == 1
        assert scrape["inferd_model_load_seconds_count{}"] == 2  # once a worker

        assert server.model_path is not None
        write_model(server.model_path, iris_forest(n_estimators=4, seed=1))
        reload = server.admin("reload")
        assert reload.status_code == 200 and reload.json()["status"] == "reloaded", reload.text
        version = reload.json()["version"]
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(server.worker_pids() - {victim}) == 2, 60,
                 "gunicorn to replace the killed worker", server.process)
        server.wait_workers_ready()
        assert set(server.versions(12)) == {version}
        assert server.scrape()["inferd_generation_oldest{}"] == server.current_generation()
        assert mapped_slot_files(master, server.state_dir) == set()
    finally:
        stop_inferd(server)
