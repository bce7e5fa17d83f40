"""The `mlflow` source: a registered model picked by version, alias or stage.

`resolve` asks the registry which concrete version the selector names right now;
`fetch` then downloads that version only (never "whatever the alias says now"), so
an alias moved mid-reload cannot mix two versions. Downloads go through a cache
under MODEL_CACHE_DIR keyed by name, version and run id, filled atomically.

mlflow is imported lazily: only the process doing a reload pays for it.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

from inferd.common.errors import SourceError
from inferd.reloading.sources import Resolved, redact_uri

# Bounded registry calls: MLflow's defaults (120 s, 7 retries with backoff) would
# hold a reload for many minutes against a dead server.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class MlflowSource:
    kind = "mlflow"

    def __init__(
        self, tracking_uri: str, name: str, selector: tuple[str, str], cache_dir: Path
    ) -> None:
        self.tracking_uri = tracking_uri
        self.shown_uri = redact_uri(tracking_uri)
        self.name = name
        self.selector = selector
        self.cache_dir = cache_dir

    def describe(self) -> str:
        kind, value = self.selector
        return f"models:/{self.name}{'@' if kind == 'alias' else '/'}{value}"

    def resolve(self) -> Resolved:
        kind, value = self.selector
        try:
            client = _client(self.tracking_uri)
            version = self._find_version(client, kind, value)
            metrics = self._run_metrics(client, version.run_id)
        except SourceError:
            raise
        except Exception as exc:  # mlflow raises many types; all mean "registry said no"
            raise SourceError(
                f"registry {self.shown_uri} could not resolve {self.describe()}: "
                f"{self._short(exc)}"
            ) from exc
        aliases = list(getattr(version, "aliases", None) or [])
        return Resolved(
            descriptor={
                "source": "mlflow",
                "tracking_uri": self.shown_uri,
                "name": self.name,
                "version": str(version.version),
                "run_id": version.run_id,
                "model_source": version.source,
            },
            version=str(version.version),
            uri=f"models:/{self.name}/{version.version}",
            stage=(version.current_stage or None) if kind != "alias" else None,
            alias=value if kind == "alias" else (aliases[0] if aliases else None),
            metrics=metrics,
        )

    def _find_version(self, client: Any, kind: str, value: str) -> Any:
        if kind == "version":
            return client.get_model_version(self.name, value)
        if kind == "alias":
            return client.get_model_version_by_alias(self.name, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still served
            found = client.get_latest_versions(self.name, stages=[value])
        if not found:
            raise SourceError(
                f"registered model {self.name!r} has no version in stage {value!r} "
                f"at {self.shown_uri}"
            )
        return found[0]

    def _short(self, exc: BaseException) -> str:
        return _short(exc).replace(self.tracking_uri, self.shown_uri)

    @staticmethod
    def _run_metrics(client: Any, run_id: str | None) -> dict[str, float]:
        """The run's metrics, best effort: they inform /health/, they never block a reload
        (the run may be deleted, or kept on another tracking server)."""
        if not run_id:
            return {}
        try:
            return {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}
        except Exception:
            return {}

    def fetch(self, resolved: Resolved, dest: Path) -> None:
        cached = self._cached(resolved)
        try:
            shutil.copytree(cached, dest / "model")
        except OSError as exc:
            raise SourceError(f"cannot copy {cached} into the slot: {exc}") from exc

    def _cached(self, resolved: Resolved) -> Path:
        d = resolved.descriptor
        entry = self.cache_dir / self.name / f"{d['version']}-{(d['run_id'] or 'norun')[:12]}"
        if (entry / "MLmodel").is_file():
            return entry
        partial = self.cache_dir / f".partial-{uuid.uuid4().hex}"
        try:
            partial.mkdir(parents=True)
            from mlflow.artifacts import download_artifacts

            location = _client(self.tracking_uri).get_model_version_download_uri(
                self.name, d["version"]
            )
            download_artifacts(
                artifact_uri=location, dst_path=str(partial), tracking_uri=self.tracking_uri
            )
            model_dir = _find_model_dir(partial)
            entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
            os.rename(model_dir, entry)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(
                f"could not download {resolved.uri} from {self.shown_uri}: {self._short(exc)}"
            ) from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return entry


def _find_model_dir(root: Path) -> Path:
    """The directory holding `MLmodel` in a download (MLflow nests it differently by URI)."""
    found = sorted(root.rglob("MLmodel"), key=lambda p: len(p.parts))
    if not found:
        raise SourceError("the downloaded artifacts contain no MLmodel file")
    return found[0].parent


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
