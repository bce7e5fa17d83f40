"""MLflow models with signatures under real gunicorn: a numeric model with named columns
answers labels and probabilities from every worker without any worker importing
pandas; a pipeline that selects its columns by name is served on the fallback path
with a DataFrame, built (and pandas imported) only in the workers serving it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tests.fakes import save_mlflow_model
from tests.integration.servers import (
    HTTP_TIMEOUT,
    IRIS_ROWS,
    InferdServer,
    start_inferd,
    stop_inferd,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration


def predict_proba(server: InferdServer) -> requests.Response:
    return requests.post(f"{server.url}/predict/",
                         json={"features": IRIS_ROWS, "output": "predict_proba"},
                         headers={"Connection": "close"}, timeout=HTTP_TIMEOUT)


def worker_modules(server: InferdServer, probes: Path, answer: Any) -> dict[int, set[str]]:
    """Ask until every worker has answered `answer()`; the top-level packages each
    worker had imported after its answer (tests/integration/probe_conf.py)."""
    pids = server.worker_pids()
    for probe in probes.glob("modules-*.json"):
        probe.unlink()

    def every_worker_answered() -> bool:
        answer()
        return all((probes / f"modules-{pid}.json").exists() for pid in pids)

    wait_for(every_worker_answered, 60, "an answer from every worker", server.process,
             interval=0.0)
    return {pid: {m.split(".")[0] for m in json.loads(
        (probes / f"modules-{pid}.json").read_text())} for pid in pids}


def test_numeric_model_without_pandas_then_a_frame_model(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    model_dir = save_mlflow_model(tmp_path / "source" / "forest", forest,
                                  input_example=x.head(3))
    served = tmp_path / "served"
    shutil.copytree(model_dir, served)
    probes = tmp_path / "probes"
    probes.mkdir()
    server = start_inferd(tmp_path, {"MODEL_SOURCE": "local", "MODEL_PATH": str(served),
                                     "INFERD_TEST_PROBE_DIR": str(probes)},
                          config="python:tests.integration.probe_conf")
    rows = np.array(IRIS_ROWS)
    try:
        def probabilities() -> None:
            resp = predict_proba(server)
            assert resp.status_code == 200, resp.text
            assert resp.json()["predictions"] == forest.predict_proba(rows).tolist()
            assert resp.json()["classes"] == [0, 1, 2]

        for pid, modules in worker_modules(server, probes, probabilities).items():
            heavy = sorted(modules & {"pandas", "sklearn", "mlflow"})
            assert heavy == [], f"worker {pid} imported {heavy} to serve a numeric model"
        assert server.predict().json()["predictions"] == forest.predict(rows).tolist()
        assert server.health().json()["model"]["form"] == "compiled"

        # Columns selected by name: the model needs a DataFrame, and a positional
        # /predict/ row is given to it under the signature's names.
        by_name = ColumnTransformer([("petals", StandardScaler(), list(x.columns[2:])),
                                     ("sepals", MinMaxScaler(), list(x.columns[:2]))])
        pipeline = make_pipeline(by_name, LogisticRegression(max_iter=500)).fit(x, y)
        shutil.rmtree(served)
        save_mlflow_model(served, pipeline, input_example=x.head(3))
        assert server.admin("reload").json().get("status") == "reloaded"
        model = server.health().json()["model"]
        assert model["form"] == "fallback" and "DataFrame" in model["fallback_reason"]
        expected = pipeline.predict_proba(pd.DataFrame(rows, columns=x.columns)).tolist()

        def frame_probabilities() -> None:
            resp = predict_proba(server)
            assert resp.status_code == 200, resp.text
            assert resp.json()["predictions"] == expected

        for pid, modules in worker_modules(server, probes, frame_probabilities).items():
            assert "pandas" in modules, f"worker {pid} served a frame model without pandas?"
    finally:
        stop_inferd(server)
