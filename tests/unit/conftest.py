"""Fixtures shared by the unit tests: a real state directory and a local model file
under `tmp_path`, and `Settings` pointing at them. Nothing here fakes storage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from tests import fakes
from tests.support import app_client


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return tmp_path / "models" / "model.joblib"


@pytest.fixture
def make_settings(state_dir: Path, model_path: Path) -> Callable[..., Settings]:
    """Settings for the `local` source on this test's state dir, with overrides."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_dir": state_dir,
            "model_source": "local",
            "model_path": model_path,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def forests() -> tuple[Any, Any]:
    """Two small, different iris forests ("version A" and "version B"), trained once."""
    return fakes.iris_forest(n_estimators=3, seed=0), fakes.iris_forest(n_estimators=3, seed=1)


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], model_path: Path,
                forests: tuple[Any, Any]) -> Callable[..., testing.TestClient]:
    """A client of the whole app serving the first of `forests` from a local file,
    published (publish=False: nothing published yet), with Settings overrides."""
    fakes.write_model(model_path, forests[0])

    def make(publish: bool = True, **overrides: Any) -> testing.TestClient:
        settings = make_settings(**overrides)
        reloader = open_reloader(settings)
        if publish:
            reloader.run()
        return app_client(settings, runner=reloader)

    return make
