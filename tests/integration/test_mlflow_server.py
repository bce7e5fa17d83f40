"""inferd against a real `mlflow server` (SQLite backend, local artifacts, loopback).

Models are registered from this process with `inferd.commands.demo.publish_demo` (mlflow is
imported once). The gunicorn server here starts the way the systemd unit does,
`gunicorn -c gunicorn.conf.py inferd.app:app`, with MODEL_SOURCE=mlflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.common.settings import Settings
from tests.integration.servers import InferdServer, MlflowServer, start_inferd, stop_inferd
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "iris-model"  # served over HTTP by stage (the default selector)
ALIASED = "iris-aliased"  # resolved in-process by alias and by pinned version
COLOURS = "colours-pipeline"  # a pipeline over string and number columns


def registry_settings(mlflow_server: MlflowServer, state_dir: Path, **kw: Any) -> Settings:
    return Settings(mlflow_tracking_uri=mlflow_server.url, state_dir=state_dir, **kw)


def client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture(scope="module")
def first_version(mlflow_server: MlflowServer,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    from inferd.commands.demo import publish_demo

    settings = registry_settings(mlflow_server, tmp_path_factory.mktemp("publisher"),
                                 mlflow_model_name=MODEL)
    published = publish_demo(settings, n_estimators=3)
    assert published.version == "1" and published.stage == "Production"
    return published.version


@pytest.fixture(scope="module")
def server(mlflow_server: MlflowServer, first_version: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferdServer]:
    base = tmp_path_factory.mktemp("inferd-mlflow")
    srv = start_inferd(base, {"MODEL_SOURCE": "mlflow", "MLFLOW_TRACKING_URI": mlflow_server.url,
                              "MLFLOW_MODEL_NAME": MODEL},
                       config="gunicorn.conf.py")
    yield srv
    stop_inferd(srv)


def test_reload_picks_up_a_newly_registered_version(server: InferdServer,
                                                    mlflow_server: MlflowServer,
                                                    tmp_path: Path) -> None:
    from inferd.commands.demo import publish_demo

    # The registry probe runs in the background: its first answer takes a moment.
    health = wait_for(lambda: (h := server.health().json())["mlflow"]["status"] != "unknown"
                      and h, 15, "the registry probe's first answer", server.process)
    assert health["ready"] is True
    assert health["model"]["version"] == "1"
    assert health["model"]["stage"] == "Production"
    assert health["mlflow"]["status"] == "ok"
    assert health["mlflow"]["model_uri"] == f"models:/{MODEL}/1"
    assert health["mlflow"]["selector"] == {"kind": "stage", "value": "Production"}
    assert health["details"]["metrics"]["accuracy"] > 0.8
    assert health["admin"] == {"auth": "disabled"}
    assert set(server.versions(10)) == {"1"}
    assert server.scrape()["ml_model_accuracy{}"] == health["details"]["metrics"]["accuracy"]

    published = publish_demo(registry_settings(mlflow_server, tmp_path, mlflow_model_name=MODEL),
                             n_estimators=4, seed=1)
    assert published.version == "2"
    resp = server.admin("reload")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "reloaded", "detail": "Model reloaded successfully",
                           "version": "2", "stage": "Production"}
    assert set(server.versions(50)) == {"2"}
    health = server.health().json()
    assert health["mlflow"]["model_uri"] == f"models:/{MODEL}/2"
    # The gauge follows the slot at once (both workers have served version 2 above).
    assert server.scrape()["ml_model_accuracy{}"] == health["details"]["metrics"]["accuracy"]

    again = server.admin("reload")
    assert again.status_code == 200
    assert again.json() == {"status": "noop", "detail": "Model descriptor unchanged",
                            "version": None, "stage": None}


def test_alias_and_pinned_version_resolve_against_the_server(
        mlflow_server: MlflowServer, first_version: str, tmp_path: Path) -> None:
    """In this process (mlflow is already imported): the selectors other than stage."""
    from inferd.reloading.reload import open_reloader

    registry = client(mlflow_server)
    registry.create_registered_model(ALIASED)
    # Two versions of one more name, made from an already-registered one: no training.
    for _ in range(2):
        registry.create_model_version(ALIASED, f"models:/{MODEL}/{first_version}")
    registry.set_registered_model_alias(ALIASED, "champion", "2")

    by_alias = open_reloader(registry_settings(
        mlflow_server, tmp_path / "alias", mlflow_model_name=ALIASED,
        mlflow_model_alias="champion"))
    result = by_alias.run()
    assert (result.status, result.version, result.stage) == ("reloaded", "2", "champion")
    assert by_alias.run().status == "noop"

    registry.set_registered_model_alias(ALIASED, "champion", "1")
    result = by_alias.run()
    assert (result.status, result.version, result.stage) == ("reloaded", "1", "champion")
    manifest = by_alias.store.current_manifest()
    assert manifest is not None and manifest["uri"] == f"models:/{ALIASED}/1"

    pinned = open_reloader(registry_settings(
        mlflow_server, tmp_path / "pinned", mlflow_model_name=ALIASED,
        mlflow_model_version="2", mlflow_model_alias="champion"))  # version wins over alias
    result = pinned.run()
    assert (result.status, result.version) == ("reloaded", "2")


def test_a_registered_string_pipeline_publishes_and_serves_with_a_frame(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """A ColumnTransformer over a string and number columns, logged by MLflow in its
    default (skops) format with its input example: fetched from the registry, published,
    and served by name, columns in any order, without pickle."""
    import json
    import warnings

    import mlflow
    import mlflow.sklearn

    from inferd.model.inputs import Columns
    from inferd.model.loaded import load_slot
    from inferd.reloading.reload import open_reloader
    from tests.fakes import colour_pipeline

    pipeline, frame = colour_pipeline()
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            mlflow.sklearn.log_model(pipeline, name="model", registered_model_name=COLOURS,
                                     input_example=frame.head(3),
                                     pip_requirements=["scikit-learn"])
    reloader = open_reloader(registry_settings(
        mlflow_server, tmp_path, mlflow_model_name=COLOURS, mlflow_model_version="1",
        allow_pickle=False))
    assert reloader.run().status == "reloaded"
    slot = reloader.store.layout.current
    manifest = json.loads((slot / "manifest.json").read_text())
    assert (manifest["input_kind"], manifest["form"], manifest["artifact"]["format"]) == (
        "frame", "fallback", "skops")
    model = load_slot(slot, manifest, allow_pickle=False)
    rows = frame.tail(4)
    request = Columns(("size", "colour", "count"), (rows["size"].tolist(),
                                                    rows["colour"].tolist(),
                                                    rows["count"].tolist()), 4)
    assert model.predict(request) == pipeline.predict(rows).tolist()
