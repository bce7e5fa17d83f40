"""MLflow's model registry through `MlflowClient`: the implementation of
`inferd.reloading.registry.base.ModelRegistry` for tracking URIs other than http(s)
(the embedded SQLite registry, databricks...), and the client the MLflow source
downloads artifacts with.

Imports MLflow, lazily: only a reload process (the reload child, the CLI's
`reload --direct`) constructs one, never a gunicorn worker.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from inferd.common.settings import Settings, mlflow_environment
from inferd.common.uris import redact_uri
from inferd.reloading.registry.base import RegistryVersion


def mlflow_client(settings: Settings) -> Any:
    """An `MlflowClient` on the tracking URI of `settings`, in this process.

    MLflow reads its credentials and HTTP bounds from os.environ, at each call; they
    are set here from `settings` (the reload child already has them in its
    environment, rendered by its parent; a CLI process gets the bounded timeouts even
    when its shell sets none)."""
    for key, value in mlflow_environment(settings).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class MlflowRegistry:
    def __init__(self, settings: Settings) -> None:
        self.client = mlflow_client(settings)
        self.shown_uri = redact_uri(settings.tracking_uri)

    def get_version(self, name: str, version: str) -> RegistryVersion:
        return _version(self.client.get_model_version(name, version))

    def get_by_alias(self, name: str, alias: str) -> RegistryVersion:
        return _version(self.client.get_model_version_by_alias(name, alias))

    def close(self) -> None:
        """Nothing to release: MlflowClient opens a connection per call."""

    def latest_in_stage(self, name: str, stage: str) -> list[RegistryVersion]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still served
            found = self.client.get_latest_versions(name, stages=[stage])
        return [_version(v) for v in found or ()]


def _version(found: Any) -> RegistryVersion:
    return RegistryVersion(
        version=str(found.version),
        run_id=found.run_id,
        source=found.source,
        current_stage=found.current_stage,
        aliases=tuple(getattr(found, "aliases", None) or ()),
    )
