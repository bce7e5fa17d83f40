"""One resolver for the reload, the auto-refresh poll and /health/: its rules on a
fake registry, the REST implementation against a stub of MLflow's REST routes (the
real `mlflow server` case is in the integration tests), the MlflowClient one against
a real SQLite registry, and the three askers agreeing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inferd.common.errors import SourceError
from inferd.common.selector import Selector
from inferd.common.settings import SETTINGS, Settings
from inferd.reloading.refresh import peek_version
from inferd.reloading.registry.base import RegistryRefused, RegistryUnreachable
from inferd.reloading.registry.health import check_registry
from inferd.reloading.registry.resolver import resolve
from inferd.reloading.registry.rest import RestRegistry
from inferd.reloading.sources.mlflow import MlflowSource
from tests.fakes import FakeRegistry, RestStub

NAME = "iris"


@pytest.fixture
def registry() -> FakeRegistry:
    """Versions 1-4 of `iris`: 2 and 3 in Production, 4 in Staging; champion -> 1."""
    fake = FakeRegistry()
    for version, stage in ((1, "None"), (2, "Production"), (3, "Production"), (4, "Staging")):
        fake.add(NAME, version, stage, run_id=f"{version:032x}")
    fake.set_alias(NAME, "champion", 1)
    return fake


@pytest.fixture
def stub(registry: FakeRegistry) -> Iterator[RestStub]:
    with RestStub(registry) as served:
        yield served


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own variables are set by the code under test: restore them afterwards."""
    for setting in SETTINGS:
        if setting.mlflow:
            monkeypatch.delenv(setting.env, raising=False)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector("version", "4"), "4"),
        (Selector("alias", "champion"), "1"),
        (Selector("stage", "Production"), "3"),  # the newest version in the stage
        (Selector("stage", "Staging"), "4"),
    ],
)
def test_each_kind_resolves_to_one_version(registry: FakeRegistry, selector: Selector,
                                           expected: str) -> None:
    assert resolve(registry, NAME, selector).version == expected


def test_an_empty_stage_is_refused_with_its_name(registry: FakeRegistry) -> None:
    with pytest.raises(RegistryRefused, match=r"'iris' has no version in stage 'Archived'$"):
        resolve(registry, NAME, Selector("stage", "Archived"))


def test_rest_resolves_as_the_fake_and_sends_mlflows_credentials(
        registry: FakeRegistry, stub: RestStub) -> None:
    settings = Settings(mlflow_tracking_uri=stub.url, mlflow_tracking_token="t0ken")
    rest = RestRegistry(settings, timeout=5)
    for selector in (Selector("version", "2"), Selector("alias", "champion"),
                     Selector("stage", "Production")):
        assert resolve(rest, NAME, selector) == resolve(registry, NAME, selector)
    assert {r.get("Authorization") for r in stub.requests} == {"Bearer t0ken"}

    basic = RestRegistry(Settings(mlflow_tracking_uri=stub.url,
                                  mlflow_tracking_username="alice",
                                  mlflow_tracking_password="pw"), timeout=5)
    basic.get_version(NAME, "1")
    assert stub.requests[-1]["Authorization"] == "Basic YWxpY2U6cHc="  # alice:pw


def test_rest_errors_are_refused_or_unreachable(stub: RestStub) -> None:
    rest = RestRegistry(Settings(mlflow_tracking_uri=stub.url), timeout=5)
    with pytest.raises(RegistryRefused, match="answered HTTP 404: RESOURCE_DOES_NOT_EXIST"):
        resolve(rest, NAME, Selector("alias", "nobody"))
    stub.fail_next = [503]
    with pytest.raises(RegistryUnreachable, match="answered HTTP 503"):
        resolve(rest, NAME, Selector("version", "1"))


def test_a_reload_retries_what_a_probe_does_not(stub: RestStub) -> None:
    settings = Settings(mlflow_tracking_uri=stub.url)
    stub.fail_next = [503, 502]
    reload_side = RestRegistry(settings, timeout=5, retries=2, backoff=0)
    assert resolve(reload_side, NAME, Selector("version", "2")).version == "2"
    assert len(stub.requests) == 3


def test_reload_poll_and_health_agree(make_settings: Callable[..., Settings],
                                      registry: FakeRegistry, stub: RestStub,
                                      mlflow_env: None) -> None:
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=stub.url,
                             mlflow_model_name=NAME)  # stage Production: 3
    health = check_registry(settings)
    resolved = MlflowSource(settings).resolve()
    assert (health.status, health.registry_version) == ("ok", "3")
    assert peek_version(settings) == resolved.version == "3"
    assert resolved.uri == "models:/iris/3"
    assert resolved.descriptor["run_id"] == f"{3:032x}" and resolved.stage == "Production"

    registry.add(NAME, 5, "Production")  # the registry moves: all three follow
    assert peek_version(settings) == MlflowSource(settings).resolve().version == "5"


def test_the_reload_names_the_stage_and_registry_it_found_empty(
        make_settings: Callable[..., Settings], stub: RestStub, mlflow_env: None) -> None:
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=stub.url,
                             mlflow_model_name=NAME, mlflow_model_stage="Archived")
    with pytest.raises(SourceError, match=r"^registered model 'iris' has no version in stage "
                                          r"'Archived' at http://127.0.0.1:\d+$"):
        MlflowSource(settings).resolve()
    assert check_registry(settings).status == "error"


@pytest.mark.slow
def test_mlflow_client_resolves_a_sqlite_registry(make_settings: Callable[..., Settings],
                                                  tmp_path: Path, mlflow_env: None) -> None:
    """The implementation for non-HTTP URIs, on a real SQLite registry, under the same
    rules; and the HTTP bounds it sets for MLflow come from the settings."""
    from mlflow.tracking import MlflowClient

    from inferd.reloading.registry.client import MlflowRegistry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for _ in range(3):
        client.create_model_version(NAME, str(tmp_path / "artifacts"))
    with pytest.warns(FutureWarning):
        client.transition_model_version_stage(NAME, "2", "Production")
    client.set_registered_model_alias(NAME, "champion", "3")

    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=uri,
                             mlflow_model_name=NAME, mlflow_http_request_timeout=7)
    mlflow_registry = MlflowRegistry(settings)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert resolve(mlflow_registry, NAME, Selector("stage", "Production")).version == "2"
    champion = resolve(mlflow_registry, NAME, Selector("alias", "champion"))
    assert (champion.version, champion.aliases) == ("3", ("champion",))
    assert resolve(mlflow_registry, NAME, Selector("version", "1")).current_stage == "None"
    with pytest.raises(RegistryRefused, match="has no version in stage 'Staging'"):
        resolve(mlflow_registry, NAME, Selector("stage", "Staging"))

    resolved = MlflowSource(settings).resolve()  # stage Production, the default
    assert (resolved.version, resolved.uri) == ("2", "models:/iris/2")


@pytest.mark.parametrize(("insecure", "expected"), [(True, False), (False, "/etc/inferd/ca.pem")])
def test_tls_settings_win_over_the_shells_ca_bundle(
        stub: RestStub, monkeypatch: pytest.MonkeyPatch, insecure: bool,
        expected: bool | str) -> None:
    """requests lets REQUESTS_CA_BUNDLE override a session's `verify`; the registry's
    own TLS settings must reach every request all the same (as they do in MLflow)."""
    import requests.adapters

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    seen: list[object] = []
    send = requests.adapters.HTTPAdapter.send

    def recording_send(self: object, request: object, **kwargs: object) -> object:
        seen.append(kwargs.get("verify"))
        return send(self, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    settings = Settings(mlflow_tracking_uri=stub.url, mlflow_tracking_insecure_tls=insecure,
                        mlflow_tracking_server_cert_path=None if insecure
                        else Path("/etc/inferd/ca.pem"))
    with RestRegistry(settings, timeout=5) as rest:
        rest.get_version(NAME, "1")
    assert seen == [expected]


def test_basic_auth_needs_both_user_and_password(stub: RestStub) -> None:
    """MLflow's precedence: user name and password, else the token."""
    settings = Settings(mlflow_tracking_uri=stub.url, mlflow_tracking_username="alice",
                        mlflow_tracking_token="t0ken")
    with RestRegistry(settings, timeout=5) as rest:
        rest.get_version(NAME, "1")
    assert stub.requests[-1]["Authorization"] == "Bearer t0ken"
