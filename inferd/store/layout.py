"""Paths inside the state directory, and nothing else.

    <state>/slots/<generation>/   a published slot: manifest.json + model/ (immutable)
    <state>/slots/.staging-*      a slot being written; never read by workers
    <state>/current -> slots/<g>  symlink, replaced with rename(2)
    <state>/generation            fixed-size counter file (see store.generation)
    <state>/reload.lock           one reload at a time, across every process
    <state>/refresh.lock          held by the auto-refresh leader (inferd.reloading.refresh)
    <state>/refresh.json          the version the poller last saw in the source
    <state>/metrics/              prometheus multiprocess files (unless PROMETHEUS_MULTIPROC_DIR)
    <state>/cache/                MLflow download cache (unless MODEL_CACHE_DIR), see download_cache

The defaults that are settings (the cache, the embedded registry's `mlflow.db` and
`mlartifacts/`) are spelled by `inferd.common.settings`, which this layer sits above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGING_PREFIX = ".staging-"
CURRENT_TMP_PREFIX = ".current-"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def generation(self) -> Path:
        return self.root / "generation"

    @property
    def lock(self) -> Path:
        return self.root / "reload.lock"

    @property
    def refresh_lock(self) -> Path:
        return self.root / "refresh.lock"

    @property
    def refresh_record(self) -> Path:
        return self.root / "refresh.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    def slot(self, generation: int) -> Path:
        return self.slots / str(generation)

    def manifest(self, generation: int) -> Path:
        return self.slot(generation) / MANIFEST_NAME
