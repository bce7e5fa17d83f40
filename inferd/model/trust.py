"""Whose pickle inferd loads: the one rule, judged per slot from the source it came from.

A pickle (joblib, cloudpickle) runs whatever code it holds when it is loaded, in the
reload child and then in every worker, where the admin token and the registry
credentials are in reach. So who may write the source decides what code runs:

- the local `MODEL_PATH` is a file the operator placed on the host: its pickle loads,
  unless INFERD_ALLOW_PICKLE=false;
- a registry is written by whoever may register a version or move an alias (often
  many people and CI jobs): its pickle loads only when the operator opts in with
  INFERD_ALLOW_PICKLE=true. skops files (MLflow's default format) need no opt-in.

Called by the reload (`inferd.reloading.reload`) with the source it fetched from, and
by every worker (`inferd.model.loaded.load_slot`) with the source a slot's manifest
names, so a slot is judged by the same rule wherever it is loaded.
"""

from __future__ import annotations

from typing import Any

# Sources whose files the operator placed on this host.
_OPERATOR_SOURCES = frozenset({"local"})


def pickle_allowed(setting: bool | None, source: str | None) -> bool:
    """INFERD_ALLOW_PICKLE (`None`: unset) applied to a model from `source`."""
    if setting is not None:
        return setting
    return source in _OPERATOR_SOURCES


def slot_source(manifest: dict[str, Any]) -> str | None:
    """The source a slot's model was fetched from (`local`, `mlflow`), from its manifest."""
    descriptor = manifest.get("descriptor")
    return descriptor.get("source") if isinstance(descriptor, dict) else None
