"""Model sources: where a reload finds the model it should serve.

A source does two things, in this order, and the reload keeps them apart so a
label that moves between them cannot mix two versions:

- `resolve()` turns the configuration into a `Resolved`: a concrete, comparable
  descriptor (MLflow: name + version + run id; local: path + content hash);
- `fetch(resolved, dest)` writes exactly that model under `dest/model/`.
"""

from __future__ import annotations

from inferd.common.settings import Settings
from inferd.reloading.sources.base import Resolved, Source

__all__ = ["Resolved", "Source", "make_source"]


def make_source(settings: Settings) -> Source:
    if settings.model_source == "local":
        from inferd.reloading.sources.local import LocalSource

        return LocalSource(settings.model_path)
    from inferd.reloading.sources.mlflow import MlflowSource

    return MlflowSource(settings)
