"""MLflow's model registry over its REST API, with `requests`: one implementation of
`inferd.reloading.registry.base.ModelRegistry`, and the server-version probe of /health/.

No MLflow import: gunicorn workers use it (the registry probe, the refresh poll)
without paying for MLflow, and a reload uses it for http(s) tracking URIs, so the
poll and the reload ask the registry the same questions the same way.

    GET  <uri>/version                                               server version
    GET  <uri>/api/2.0/mlflow/model-versions/get                     a version
    GET  <uri>/api/2.0/mlflow/registered-models/alias                an alias
    POST <uri>/api/2.0/mlflow/registered-models/get-latest-versions  a stage

Credentials and TLS come from MLflow's own settings (MLFLOW_TRACKING_TOKEN,
_USERNAME/_PASSWORD, _INSECURE_TLS, _SERVER_CERT_PATH), read through
`inferd.common.settings`; they are never part of a message.
"""

from __future__ import annotations

from typing import Any

from inferd.common.settings import Settings
from inferd.common.uris import redact_uri
from inferd.reloading.registry.base import RegistryRefused, RegistryUnreachable, RegistryVersion

_REST = "/api/2.0/mlflow"
# Retried like MLflow retries its own calls (mlflow/utils/request_utils.py): the
# answers a busy or restarting server gives.
_RETRY_STATUSES = (429, 500, 502, 503, 504)


class RestRegistry:
    """One registry, one `requests` session. Thread-safe enough for its callers: each
    probe or poll round builds its own."""

    def __init__(self, settings: Settings, timeout: float, retries: int = 0,
                 backoff: float = 0) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        uri = settings.tracking_uri
        self.base = uri.rstrip("/")
        self.shown_uri = redact_uri(uri)
        self.timeout = timeout
        self.session = requests.Session()
        # MLflow's precedence (mlflow/utils/rest_utils.py): basic auth when both a user
        # name and a password are set, else the bearer token.
        if settings.mlflow_tracking_username and settings.mlflow_tracking_password:
            self.session.auth = (settings.mlflow_tracking_username,
                                 settings.mlflow_tracking_password)
        elif settings.mlflow_tracking_token:
            self.session.headers["Authorization"] = f"Bearer {settings.mlflow_tracking_token}"
        ca_bundle = settings.mlflow_tracking_server_cert_path
        # Passed with every request, not set on the session: requests lets
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`
        # (Session.merge_environment_settings), which would undo MLFLOW_TRACKING_INSECURE_TLS.
        self.verify: bool | str = (False if settings.mlflow_tracking_insecure_tls
                                   else str(ca_bundle) if ca_bundle else True)
        client_cert = settings.mlflow_tracking_client_cert_path
        self.cert = str(client_cert) if client_cert else None
        if retries:
            retry = Retry(total=retries, backoff_factor=backoff, allowed_methods=None,
                          status_forcelist=_RETRY_STATUSES, raise_on_status=False)
            adapter = HTTPAdapter(max_retries=retry)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RestRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            resp = self.session.request(method, self.base + path, timeout=self.timeout,
                                        verify=self.verify, cert=self.cert, **kwargs)
        except requests.Timeout:
            raise RegistryUnreachable(
                f"{self.shown_uri} did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise RegistryUnreachable(
                f"cannot reach {self.shown_uri}: {type(exc).__name__}") from None
        if resp.status_code >= 500:
            raise RegistryUnreachable(f"{self.shown_uri} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise RegistryRefused(f"{self.shown_uri} answered HTTP {resp.status_code}: "
                                  f"{_message(resp)}")
        return resp

    def server_version(self) -> str:
        return str(self._call("GET", "/version").text.strip()[:40])

    def get_version(self, name: str, version: str) -> RegistryVersion:
        body = self._call("GET", f"{_REST}/model-versions/get",
                          params={"name": name, "version": version}).json()
        return _version(body["model_version"])

    def get_by_alias(self, name: str, alias: str) -> RegistryVersion:
        body = self._call("GET", f"{_REST}/registered-models/alias",
                          params={"name": name, "alias": alias}).json()
        return _version(body["model_version"])

    def latest_in_stage(self, name: str, stage: str) -> list[RegistryVersion]:
        body = self._call("POST", f"{_REST}/registered-models/get-latest-versions",
                          json={"name": name, "stages": [stage]}).json()
        return [_version(found) for found in body.get("model_versions") or []]


def _message(resp: Any) -> str:
    try:
        message = resp.json().get("message") or resp.text
    except ValueError:
        message = resp.text
    return str(message).strip()[:200]


def _version(found: dict[str, Any]) -> RegistryVersion:
    """A `ModelVersion` of MLflow's REST answers; KeyError/TypeError if it is not one.
    Absent strings read as "", as MlflowClient reads them (protobuf defaults), so a
    version's descriptor is the same whichever implementation resolved it."""
    return RegistryVersion(
        version=str(found["version"]),
        run_id=found.get("run_id", ""),
        source=found.get("source", ""),
        current_stage=found.get("current_stage", ""),
        aliases=tuple(str(a) for a in found.get("aliases") or ()),
    )
