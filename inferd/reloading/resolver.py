"""Which registered version does a `Selector` name? Answered in one place, for all three
askers: a reload (`inferd.reloading.sources.mlflow`), the auto-refresh poll and
/health/ (both through `inferd.reloading.registry.check_registry`). Written once
against `ModelRegistry`, so the poll and the reload cannot disagree on the rules:

- `version` -> that version; `alias` -> the version the alias points at;
- `stage`   -> the newest version in that stage (by version number), or
  `RegistryRefused` "has no version in stage" when there is none.

Two implementations of the interface:

- `inferd.reloading.registry_rest.RestRegistry`: MLflow's REST API over `requests`,
  for http(s) tracking URIs. No MLflow import, so gunicorn workers use it (/health/,
  the refresh poll), and so does the reload for those URIs.
- `inferd.reloading.registry_mlflow.MlflowRegistry`: `MlflowClient`, for the other
  URIs (SQLite, databricks...). Imports MLflow: only in a reload process (the reload
  child, or the CLI's `reload --direct`).

`open_registry(settings)` picks one for a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

from inferd.common.selector import Selector
from inferd.common.settings import Settings


class RegistryUnreachable(Exception):
    """No usable answer: connection refused, timeout, 5xx, missing database file."""


class RegistryRefused(Exception):
    """The registry answered, but cannot resolve the configured model selector."""


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


def resolve(registry: ModelRegistry, name: str, selector: Selector) -> RegistryVersion:
    """The version `selector` names in `registry` now (one or two registry calls)."""
    if selector.kind == "version":
        return registry.get_version(name, selector.value)
    if selector.kind == "alias":
        return registry.get_by_alias(name, selector.value)
    found = registry.latest_in_stage(name, selector.value)
    if not found:
        raise RegistryRefused(f"registered model {name!r} has no version in stage "
                              f"{selector.value!r} at {registry.shown_uri}")
    return max(found, key=_version_order)


def _version_order(version: RegistryVersion) -> int:
    # MLflow versions are 1, 2, 3...; anything else sorts first rather than failing.
    return int(version.version) if version.version.isdigit() else -1


def is_rest_uri(uri: str) -> bool:
    """An MLflow tracking server that the REST implementation can ask."""
    return urlparse(uri).scheme in ("http", "https")


def open_registry(settings: Settings) -> ModelRegistry:
    """The registry a reload resolves against, bounded by MLflow's HTTP settings
    (MLFLOW_HTTP_REQUEST_*). Called in a reload process only: for a URI other than
    http(s), this imports MLflow."""
    if is_rest_uri(settings.tracking_uri):
        from inferd.reloading.registry_rest import RestRegistry

        return RestRegistry(settings, timeout=settings.mlflow_http_request_timeout,
                            retries=settings.mlflow_http_request_max_retries,
                            backoff=settings.mlflow_http_request_backoff_factor)
    from inferd.reloading.registry_mlflow import MlflowRegistry

    return MlflowRegistry(settings)
