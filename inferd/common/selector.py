"""Which registered model version to serve: a `Selector`, and the one place that
writes MLflow's model URIs.

A selector is the registry label a reload follows: a pinned `version`, an `alias`
(`champion`) or a `stage` (`Production`, deprecated in MLflow but still served).
It is a plain value, built from the settings (`Settings.selector`, which applies
the precedence version > alias > stage) and read by the resolver
(`inferd.reloading.registry.resolver`), /health/ and the logs.

    Selector("version", "3").model_uri("iris")       -> models:/iris/3
    Selector("alias", "champion").model_uri("iris")  -> models:/iris@champion
    Selector("stage", "Production").model_uri("iris") -> models:/iris/Production

It is a NamedTuple so that `kind, value = selector` keeps working where a caller
unpacks it; compare selectors with each other, not with bare tuples.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

SelectorKind = Literal["version", "alias", "stage"]


class Selector(NamedTuple):
    kind: SelectorKind
    value: str

    @classmethod
    def pinned(cls, version: str) -> Selector:
        """A concrete version, e.g. the one a moving label resolved to."""
        return cls("version", str(version))

    def model_uri(self, name: str) -> str:
        """MLflow's URI for this selection of registered model `name` (no secrets)."""
        separator = "@" if self.kind == "alias" else "/"
        return f"models:/{name}{separator}{self.value}"

    def describe(self) -> str:
        """`alias=champion`: for logs and for keys that must change with the selection."""
        return f"{self.kind}={self.value}"


def version_uri(name: str, version: str) -> str:
    """`models:/name/3`: the URI of one concrete registered version."""
    return Selector.pinned(version).model_uri(name)
