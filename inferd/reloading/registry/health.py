"""Is the MLflow registry there, and which version does it name? Checked in the
background, cached, never on a request's time.

One `RegistryProbe` per gunicorn worker (inferd.serving.registry_probe) calls
`check_registry` every INFERD_REGISTRY_PROBE_SECONDS with a short timeout and keeps
the last answer; `/health/` only reads it. The auto-refresh poll
(inferd.reloading.refresh) calls it too, to learn cheaply whether the registry
names a new version. No MLflow import: for an HTTP tracking server the check is
the server's version plus the selector resolved by `inferd.reloading.registry.resolver`
over REST (`inferd.reloading.registry.rest.RestRegistry`), the same resolution a reload does; for
the embedded SQLite registry, a read-only open of the database file (the server
version is then the installed MLflow client's, and the version it names is unknown
until a reload resolves it).

Statuses: `ok`; `unreachable` (no answer, a timeout, a 5xx, a missing database
file); `error` (the registry answers but cannot resolve the selector, e.g. the
alias is not set); `unknown` (not checked yet, or a URI scheme inferd does not
probe); `not_used` (MODEL_SOURCE=local).
"""

from __future__ import annotations

import importlib.metadata
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from inferd.common.settings import Settings
from inferd.common.uris import redact_uri
from inferd.reloading.registry.base import RegistryRefused, RegistryUnreachable
from inferd.reloading.registry.resolver import is_rest_uri, resolve
from inferd.reloading.registry.rest import RestRegistry

PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class RegistryHealth:
    status: str
    reason: str | None = None
    server_version: str | None = None
    registry_version: str | None = None  # the version the selector names now, if known
    checked_at: float | None = None
    verified_at: float | None = None  # last time the status was ok

    @property
    def reachable(self) -> bool:
        return self.status == "ok"


def _client_version() -> str | None:
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_sqlite(uri: str, timeout: float) -> None:
    # SQLAlchemy's form: sqlite:///relative/path or sqlite:////absolute/path
    path = Path(unquote(uri.split("://", 1)[1][1:].split("?", 1)[0])).absolute()
    if not path.is_file():
        raise RegistryUnreachable(f"registry database {path} does not exist")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise RegistryUnreachable(f"registry database {path} cannot be read: {exc}") from None


def check_registry(settings: Settings, timeout: float = PROBE_TIMEOUT_SECONDS) -> RegistryHealth:
    """One check, now, in the calling thread (at most a few `timeout`s)."""
    now = time.time()
    if settings.model_source != "mlflow":
        return RegistryHealth("not_used", checked_at=now)
    uri = settings.tracking_uri
    scheme = urlparse(uri).scheme
    try:
        if is_rest_uri(uri):
            with RestRegistry(settings, timeout) as registry:
                server_version = registry.server_version()
                found = resolve(registry, settings.mlflow_model_name, settings.selector)
            return RegistryHealth("ok", None, server_version, found.version, now, now)
        if scheme == "sqlite":
            _check_sqlite(uri, timeout)
            return RegistryHealth("ok", None, _client_version(), None, now, now)
    except RegistryUnreachable as exc:
        return RegistryHealth("unreachable", str(exc), checked_at=now)
    except RegistryRefused as exc:
        return RegistryHealth("error", str(exc), checked_at=now)
    except (ValueError, KeyError, TypeError) as exc:
        return RegistryHealth("error", f"unexpected answer from {redact_uri(uri)}: {exc!r}",
                              checked_at=now)
    return RegistryHealth("unknown", f"inferd does not probe {scheme or 'local'} registries",
                          _client_version(), checked_at=now)
