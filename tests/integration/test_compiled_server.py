"""A compiled slot under real gunicorn: every worker serves it from mmapped arrays
without importing scikit-learn, pandas or MLflow, and /health/ says which form serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neighbors import KNeighborsClassifier

from tests.fakes import iris_forest, write_model
from tests.integration.servers import IRIS_ROWS, start_inferd, stop_inferd
from tests.support import wait_for

pytestmark = pytest.mark.integration

HEAVY = ("sklearn", "pandas", "mlflow", "joblib", "skops", "scipy")


def test_compiled_slot_serves_without_sklearn_then_fallback(tmp_path: Path) -> None:
    forest = iris_forest(n_estimators=20, seed=3)
    model_path = write_model(tmp_path / "models" / "model.joblib", forest)
    probes = tmp_path / "probes"
    probes.mkdir()
    server = start_inferd(tmp_path, {"MODEL_SOURCE": "local", "MODEL_PATH": str(model_path),
                                     "INFERD_TEST_PROBE_DIR": str(probes)},
                          config="python:tests.integration.probe_conf")
    try:
        pids = server.worker_pids()

        def no_heavy_imports_in_any_worker(expected: list[Any]) -> None:
            for probe in probes.glob("modules-*.json"):
                probe.unlink()

            def every_worker_answered() -> bool:
                resp = server.predict()
                assert resp.status_code == 200, resp.text
                assert resp.json()["predictions"] == expected
                return all((probes / f"modules-{pid}.json").exists() for pid in pids)

            wait_for(every_worker_answered, 60, "a prediction from every worker",
                     server.process, interval=0.0)
            for pid in pids:
                modules = json.loads((probes / f"modules-{pid}.json").read_text())
                heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
                assert heavy == [], f"worker {pid} imported {heavy} to serve a compiled slot"

        def reload_to(model: Any) -> None:
            write_model(model_path, model)
            answer = server.admin("reload")
            assert answer.json().get("status") == "reloaded", answer.text
            # No request is sent until every worker has loaded it: the slot watcher loads
            # a new slot by itself (bounded wait; typically well under a second).
            generation = server.current_generation()
            wait_for(lambda: all(generation in server.loaded_generations().get(pid, ())
                                 for pid in pids),
                     30, "every worker to load the new slot without a request",
                     server.process)

        rows = np.array(IRIS_ROWS)
        no_heavy_imports_in_any_worker(forest.predict(rows).tolist())
        model = server.health().json()["model"]
        assert (model["form"], model["estimator"]) == ("compiled", "RandomForestClassifier")

        # Gradient boosting is a tree model too: compiled, still no scikit-learn.
        x, y = load_iris(return_X_y=True)
        x = np.where(np.random.default_rng(0).random(x.shape) < 0.1, np.nan, x)
        boosted = HistGradientBoostingClassifier(max_iter=30).fit(x, y)
        reload_to(boosted)
        no_heavy_imports_in_any_worker(boosted.predict(rows).tolist())
        model = server.health().json()["model"]
        assert (model["form"], model["estimator"]) == ("compiled",
                                                       "HistGradientBoostingClassifier")

        # A model without a compiled form is served by its own loader, and says why.
        neighbours = KNeighborsClassifier(3).fit(load_iris().data, load_iris().target)
        reload_to(neighbours)
        resp = server.predict()
        assert resp.json()["predictions"] == neighbours.predict(rows).tolist()
        model = server.health().json()["model"]
        assert model["form"] == "fallback"
        assert "KNeighborsClassifier" in model["fallback_reason"]
    finally:
        stop_inferd(server)
