"""What a model source is: `resolve()` a concrete descriptor, then `fetch()` exactly it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


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
