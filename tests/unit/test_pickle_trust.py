"""Whose pickle inferd loads (inferd.model.trust): the operator's local MODEL_PATH by
default, a registry's only with INFERD_ALLOW_PICKLE=true; skops from anywhere. Real
slot store on tmp_path; the registry is a prepared MLflow model directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inferd.common.errors import ModelLoadError
from inferd.common.settings import Settings, load_settings
from inferd.model.loaded import load_slot
from inferd.model.trust import pickle_allowed
from inferd.reloading import sources
from inferd.reloading.reload import open_reloader
from tests.fakes import DirectorySource, write_mlflow_dir, write_model


@pytest.fixture
def registry_model(tmp_path: Path, forests: tuple[Any, Any],
                   monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make the MLflow source serve a registry version saved in `format`."""

    def serve(serialization_format: str) -> None:
        model_dir = write_mlflow_dir(tmp_path / f"registry-{serialization_format}",
                                     forests[0], serialization_format)
        monkeypatch.setattr(sources, "make_source", lambda settings: DirectorySource(model_dir))

    return serve


def test_registry_pickle_is_refused_by_default(make_settings: Callable[..., Settings],
                                               registry_model: Callable[[str], None]) -> None:
    registry_model("cloudpickle")
    reloader = open_reloader(make_settings(model_source="mlflow"))
    with pytest.raises(ModelLoadError, match="from a registry only with INFERD_ALLOW_PICKLE=true"):
        reloader.run()
    assert reloader.store.current_generation() is None  # nothing published


def test_registry_pickle_loads_when_the_operator_opts_in(
        make_settings: Callable[..., Settings], registry_model: Callable[[str], None]) -> None:
    registry_model("cloudpickle")
    settings = make_settings(model_source="mlflow", allow_pickle=True)
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    store = reloader.store
    generation = store.current_generation()
    assert generation is not None
    manifest = store.read_manifest(generation)
    assert load_slot(store.layout.slot(generation), manifest, True).form == "compiled"
    # A worker whose operator withdrew the opt-in refuses the registry's pickle, even
    # though it is already published (the fallback form would unpickle it).
    manifest["form"] = "fallback"
    with pytest.raises(ModelLoadError, match="INFERD_ALLOW_PICKLE"):
        load_slot(store.layout.slot(generation), manifest, None)


def test_registry_skops_needs_no_opt_in(make_settings: Callable[..., Settings],
                                        registry_model: Callable[[str], None]) -> None:
    registry_model("skops")
    assert open_reloader(make_settings(model_source="mlflow")).run().status == "reloaded"


def test_the_operators_local_pickle_loads_by_default(settings: Settings, model_path: Path,
                                                     forests: tuple[Any, Any]) -> None:
    write_model(model_path, forests[0])
    assert settings.allow_pickle is None
    assert open_reloader(settings).run().status == "reloaded"


def test_allow_pickle_false_refuses_even_the_local_file(make_settings: Callable[..., Settings],
                                                        model_path: Path,
                                                        forests: tuple[Any, Any]) -> None:
    write_model(model_path, forests[0])
    with pytest.raises(ModelLoadError, match="INFERD_ALLOW_PICKLE"):
        open_reloader(make_settings(allow_pickle=False)).run()


@pytest.mark.parametrize(("raw", "source", "allowed"), [
    (None, "local", True), (None, "mlflow", False), (None, None, False),
    ("true", "local", True), ("true", "mlflow", True),
    ("false", "local", False), ("false", "mlflow", False),
])
def test_the_rule(raw: str | None, source: str | None, allowed: bool) -> None:
    env = {} if raw is None else {"INFERD_ALLOW_PICKLE": raw}
    assert pickle_allowed(load_settings(env).allow_pickle, source) is allowed
