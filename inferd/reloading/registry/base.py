"""What a model registry is to inferd: the three calls that selecting a version needs
(`ModelRegistry`), the version they answer with, and the two ways they fail.
Implemented by `inferd.reloading.registry.rest` and `inferd.reloading.registry.client`;
used by `inferd.reloading.registry.resolver`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RegistryUnreachable(Exception):
    """No usable answer: connection refused, timeout, 5xx, missing database file."""


class RegistryRefused(Exception):
    """The registry answered, but cannot resolve the configured model selector."""


class NoVersionInStage(RegistryRefused):
    """The stage a selector names holds no version of the model (a complete answer,
    which a reload shows as it is rather than as an error of the registry's)."""


@dataclass(frozen=True)
class RegistryVersion:
    """One registered model version, as either implementation reports it. Fields keep
    the registry's own values (`current_stage` may be MLflow's "None" string)."""

    version: str
    run_id: str | None = None
    source: str | None = None
    current_stage: str | None = None
    aliases: tuple[str, ...] = ()


class ModelRegistry(Protocol):
    """The three registry calls selection needs. Implementations raise
    RegistryUnreachable / RegistryRefused (REST) or MLflow's own errors (MlflowClient;
    the reload turns those into SourceError)."""

    shown_uri: str  # the tracking URI without credentials

    def get_version(self, name: str, version: str) -> RegistryVersion: ...

    def get_by_alias(self, name: str, alias: str) -> RegistryVersion: ...

    def latest_in_stage(self, name: str, stage: str) -> list[RegistryVersion]: ...

    def close(self) -> None:
        """Release connections; the registry is not used after this."""
