"""Is the MLflow registry there, and which version does it name? Checked in the
background, cached, never on a request's time.

One `RegistryProbe` per gunicorn worker: a daemon thread checks the registry every
INFERD_REGISTRY_PROBE_SECONDS with a short timeout and keeps the last answer;
`/health/` only reads it. No MLflow import: for an HTTP tracking server the probe
is two plain requests to MLflow's REST API,

    GET  <uri>/version                                          -> server version
    GET  <uri>/api/2.0/mlflow/registered-models/alias           (MLFLOW_MODEL_ALIAS)
    GET  <uri>/api/2.0/mlflow/model-versions/get                (MLFLOW_MODEL_VERSION)
    POST <uri>/api/2.0/mlflow/registered-models/get-latest-versions   (stage)

and for the embedded SQLite registry a read-only open of the database file (the
server version is then the installed MLflow client's). The same check tells
auto-refresh (inferd.reloading.refresh) cheaply whether the registry names a new version.

Statuses: `ok`; `unreachable` (no answer, a timeout, a 5xx, a missing database
file); `error` (the registry answers but cannot resolve the selector, e.g. the
alias is not set); `unknown` (not checked yet, or a URI scheme inferd does not
probe); `not_used` (MODEL_SOURCE=local).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from inferd.common.settings import Settings
from inferd.reloading.sources import redact_uri

log = logging.getLogger("inferd.registry")

PROBE_TIMEOUT_SECONDS = 3.0
_REST = "/api/2.0/mlflow"


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


class RegistryUnreachable(Exception):
    """No usable answer: connection refused, timeout, 5xx, missing database file."""


class RegistryRefused(Exception):
    """The registry answered, but cannot resolve the configured model selector."""


def _client_version() -> str | None:
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None


class _HttpRegistry:
    """MLflow's REST API with `requests`, honouring MLflow's own auth variables."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.base = uri.rstrip("/")
        self.shown = redact_uri(uri)
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            self.headers["Authorization"] = f"Bearer {token}"
        user, password = (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                          os.environ.get("MLFLOW_TRACKING_PASSWORD"))
        self.auth = (user, password or "") if user else None
        insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
        self.verify: bool | str = (
            False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            resp = requests.request(method, self.base + path, timeout=self.timeout,
                                    headers=self.headers, auth=self.auth, verify=self.verify,
                                    **kwargs)
        except requests.Timeout:
            raise RegistryUnreachable(
                f"{self.shown} did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise RegistryUnreachable(
                f"cannot reach {self.shown}: {type(exc).__name__}") from None
        if resp.status_code >= 500:
            raise RegistryUnreachable(f"{self.shown} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message") or resp.text
            except ValueError:
                message = resp.text
            raise RegistryRefused(f"{self.shown} answered HTTP {resp.status_code}: "
                                  f"{str(message).strip()[:200]}")
        return resp

    def server_version(self) -> str:
        return str(self._call("GET", "/version").text.strip()[:40])

    def selected_version(self, name: str, selector: tuple[str, str]) -> str:
        kind, value = selector
        if kind == "alias":
            body = self._call("GET", f"{_REST}/registered-models/alias",
                              params={"name": name, "alias": value}).json()
            return str(body["model_version"]["version"])
        if kind == "version":
            body = self._call("GET", f"{_REST}/model-versions/get",
                              params={"name": name, "version": value}).json()
            return str(body["model_version"]["version"])
        body = self._call("POST", f"{_REST}/registered-models/get-latest-versions",
                          json={"name": name, "stages": [value]}).json()
        found = body.get("model_versions") or []
        if not found:
            raise RegistryRefused(f"registered model {name!r} has no version in stage {value!r}")
        return str(found[0]["version"])


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
        if scheme in ("http", "https"):
            registry = _HttpRegistry(uri, timeout)
            server_version = registry.server_version()
            version = registry.selected_version(settings.mlflow_model_name, settings.selector)
            return RegistryHealth("ok", None, server_version, version, now, now)
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
