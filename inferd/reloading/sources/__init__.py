"""Model sources: where a reload finds the model it should serve.

A source does two things, in this order, and the reload keeps them apart so a
label that moves between them cannot mix two versions:

- `resolve()` turns the configuration into a `Resolved`: a concrete, comparable
  descriptor (MLflow: name + version + run id; local: path + content hash);
- `fetch(resolved, dest)` writes exactly that model under `dest/model/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from inferd.common.settings import Settings


@dataclass(frozen=True)
class Resolved:
    descriptor: dict[str, Any]
    version: str
    uri: str
    stage: str | None = None
    alias: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Source(Protocol):
    kind: str

    def resolve(self) -> Resolved: ...

    def fetch(self, resolved: Resolved, dest: Path) -> None: ...


def redact_uri(uri: str) -> str:
    """The URI without credentials (`https://user:pw@host` -> `https://***@host`),
    for anything shown to a client or written to a log or a manifest."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def make_source(settings: Settings) -> Source:
    if settings.model_source == "local":
        from inferd.reloading.sources.local import LocalSource

        return LocalSource(settings.model_path)
    from inferd.reloading.sources.mlflow import MlflowSource

    return MlflowSource(settings)
