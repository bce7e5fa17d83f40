"""The `mlflow` source: a registered model picked by version, alias or stage.

`resolve` asks the registry which concrete version the selector names right now
(`inferd.reloading.registry.resolver`, the same resolution the auto-refresh poll and
/health/ use: over REST for an http(s) tracking server, through MlflowClient
otherwise); `fetch` then downloads that version only (never "whatever the alias
says now"), so an alias moved mid-reload cannot mix two versions. Downloads go
through a cache under MODEL_CACHE_DIR keyed by name, version and run id
(`inferd.store.download_cache`: an entry counts only once its checksums are on disk;
pruned with the slots).

mlflow is imported lazily: only the process doing a reload pays for it. Its HTTP
calls are bounded by MLFLOW_HTTP_REQUEST_* (declared in inferd.common.settings with
inferd's defaults, 15 s and 2 retries: MLflow's own, 120 s and 7 retries with
backoff, would hold a reload for many minutes against a dead server).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from inferd.common.errors import SourceError
from inferd.common.selector import version_uri
from inferd.common.settings import Settings
from inferd.common.uris import redact_uri
from inferd.reloading.registry.base import NoVersionInStage
from inferd.reloading.registry.client import mlflow_client
from inferd.reloading.registry.resolver import open_registry, resolve
from inferd.reloading.sources.base import Resolved
from inferd.store.download_cache import MARKER, DownloadCache, entry_key


class MlflowSource:
    kind = "mlflow"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.tracking_uri
        self.shown_uri = redact_uri(self.tracking_uri)
        self.name = settings.mlflow_model_name
        self.selector = settings.selector
        self.cache_dir = settings.cache_dir

    def describe(self) -> str:
        return self.selector.model_uri(self.name)

    def resolve(self) -> Resolved:
        kind, value = self.selector
        try:
            with contextlib.closing(open_registry(self.settings)) as registry:
                version = resolve(registry, self.name, self.selector)
            metrics = self._run_metrics(version.run_id)
        except NoVersionInStage as exc:
            raise SourceError(f"{exc} at {self.shown_uri}") from exc
        # RegistryRefused / RegistryUnreachable over REST, MLflow's many types through
        # MlflowClient: for the reload, all mean "the registry gave no model".
        except Exception as exc:
            raise SourceError(
                f"registry {self.shown_uri} could not resolve {self.describe()}: "
                f"{self._short(exc)}"
            ) from exc
        return Resolved(
            descriptor={
                "source": "mlflow",
                "tracking_uri": self.shown_uri,
                "name": self.name,
                "version": version.version,
                "run_id": version.run_id,
                "model_source": version.source,
            },
            version=version.version,
            uri=version_uri(self.name, version.version),
            stage=(version.current_stage or None) if kind != "alias" else None,
            alias=value if kind == "alias" else (version.aliases[0] if version.aliases else None),
            metrics=metrics,
        )

    def _short(self, exc: BaseException) -> str:
        return _short(exc).replace(self.tracking_uri, self.shown_uri)

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        """The run's metrics, best effort: they inform /health/, they never block a reload
        (the run may be deleted, or kept on another tracking server)."""
        if not run_id:
            return {}
        try:
            run = mlflow_client(self.settings).get_run(run_id)
            return {k: float(v) for k, v in run.data.metrics.items()}
        except Exception:
            return {}

    def fetch(self, resolved: Resolved, dest: Path) -> None:
        cached = self._cached(resolved)
        try:
            shutil.copytree(cached, dest / "model", ignore=shutil.ignore_patterns(MARKER))
        except OSError as exc:
            raise SourceError(f"cannot copy {cached} into the slot: {exc}") from exc

    def _cached(self, resolved: Resolved) -> Path:
        key = entry_key(resolved.descriptor)
        assert key is not None  # an mlflow descriptor
        try:
            return DownloadCache(self.cache_dir).get(
                key, lambda partial: self._download(resolved, partial))
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(
                f"could not download {resolved.uri} from {self.shown_uri}: {self._short(exc)}"
            ) from exc

    def _download(self, resolved: Resolved, partial: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        location = mlflow_client(self.settings).get_model_version_download_uri(
            self.name, resolved.descriptor["version"]
        )
        download_artifacts(
            artifact_uri=location, dst_path=str(partial), tracking_uri=self.tracking_uri
        )
        return _find_model_dir(partial)


def _find_model_dir(root: Path) -> Path:
    """The directory holding `MLmodel` in a download (MLflow nests it differently by URI)."""
    found = sorted(root.rglob("MLmodel"), key=lambda p: len(p.parts))
    if not found:
        raise SourceError("the downloaded artifacts contain no MLmodel file")
    return found[0].parent


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
