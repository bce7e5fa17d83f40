"""Which registered version does a `Selector` name? Answered in one place, for all three
askers: a reload (`inferd.reloading.sources.mlflow`), the auto-refresh poll and
/health/ (both through `inferd.reloading.registry.health.check_registry`). Written once
against `ModelRegistry`, so the poll and the reload cannot disagree on the rules:

- `version` -> that version; `alias` -> the version the alias points at;
- `stage`   -> the newest version in that stage (by version number), or
  `RegistryRefused` "has no version in stage" when there is none.

Two implementations of the interface:

- `inferd.reloading.registry.rest.RestRegistry`: MLflow's REST API over `requests`,
  for http(s) tracking URIs. No MLflow import, so gunicorn workers use it (/health/,
  the refresh poll), and so does the reload for those URIs.
- `inferd.reloading.registry.client.MlflowRegistry`: `MlflowClient`, for the other
  URIs (SQLite, databricks...). Imports MLflow: only in a reload process (the reload
  child, or the CLI's `reload --direct`).

`open_registry(settings)` picks one for a reload.
"""

from __future__ import annotations

from urllib.parse import urlparse

from inferd.common.selector import Selector
from inferd.common.settings import Settings
from inferd.reloading.registry.base import ModelRegistry, NoVersionInStage, RegistryVersion
from inferd.reloading.registry.identifiers import checked


def resolve(registry: ModelRegistry, name: str, selector: Selector) -> RegistryVersion:
    """The version `selector` names in `registry` now (one or two registry calls), its
    version number and run id checked (`inferd.reloading.registry.identifiers`)."""
    if selector.kind == "version":
        return checked(registry.get_version(name, selector.value), name)
    if selector.kind == "alias":
        return checked(registry.get_by_alias(name, selector.value), name)
    found = registry.latest_in_stage(name, selector.value)
    if not found:
        raise NoVersionInStage(f"registered model {name!r} has no version in stage "
                               f"{selector.value!r}")
    return checked(max(found, key=_version_order), name)


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
        from inferd.reloading.registry.rest import RestRegistry

        return RestRegistry(settings, timeout=settings.mlflow_http_request_timeout,
                            retries=settings.mlflow_http_request_max_retries,
                            backoff=settings.mlflow_http_request_backoff_factor)
    from inferd.reloading.registry.client import MlflowRegistry

    return MlflowRegistry(settings)
