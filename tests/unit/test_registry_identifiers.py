"""A registry's version number and run id become the X-Model-Version header of every
answer and directory names of the download cache: only a number and hex digits pass
(inferd.reloading.registry.identifiers). Through the REST stub of MLflow's routes, as
a reload asks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from inferd.common.errors import SourceError
from inferd.common.selector import Selector
from inferd.common.settings import SETTINGS, Settings
from inferd.reloading.registry.base import RegistryRefused, RegistryVersion
from inferd.reloading.registry.resolver import resolve
from inferd.reloading.reload import open_reloader
from tests.fakes import FakeRegistry, RestStub

NAME = "iris"


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        if setting.mlflow:
            monkeypatch.delenv(setting.env, raising=False)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def stub(registry: FakeRegistry) -> Iterator[RestStub]:
    with RestStub(registry) as served:
        yield served


def register(registry: FakeRegistry, version: str, run_id: str) -> None:
    registry.versions[NAME, version] = RegistryVersion(version, run_id, "models:/m-1",
                                                       "Production")


@pytest.mark.parametrize(("version", "run_id", "refused"), [
    ("2\r\nX-Injected: yes", "", "version"),
    ("2\n", "", "version"),
    ("../2", "", "version"),
    ("0", "", "version"),
    ("٣", "", "version"),  # a digit to str.isdigit, not to a header or a path
    ("2", "../../../../tmp/elsewhere", "run id"),
    ("2", "abc\x00", "run id"),
], ids=["header-injection", "newline", "path", "zero", "arabic-digit", "run-id-path",
        "run-id-nul"])
def test_a_reload_refuses_what_is_not_a_number_or_hex(
        make_settings: Callable[..., Settings], registry: FakeRegistry, stub: RestStub,
        version: str, run_id: str, refused: str) -> None:
    register(registry, version, run_id)
    settings = make_settings(model_source="mlflow", mlflow_tracking_uri=stub.url,
                             mlflow_model_name=NAME)
    reloader = open_reloader(settings)
    with pytest.raises(SourceError, match=f"answered {refused} .* expected"):
        reloader.run()
    assert reloader.store.current_generation() is None
    assert not (settings.cache_dir.parent / "tmp").exists()


def test_mlflow_shaped_identifiers_pass(registry: FakeRegistry) -> None:
    register(registry, "12", "0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    registry.set_alias(NAME, "champion", 12)
    for selector in (Selector("stage", "Production"), Selector("alias", "champion"),
                     Selector("version", "12")):
        assert resolve(registry, NAME, selector).version == "12"


def test_a_bad_identifier_is_a_refusal_not_unreachable(registry: FakeRegistry) -> None:
    register(registry, "1 ", "")
    with pytest.raises(RegistryRefused, match=r"'1 '"):
        resolve(registry, NAME, Selector("stage", "Production"))
