"""A compiled slot under real gunicorn: every worker serves it from mmapped arrays
without importing scikit-learn, pandas or MLflow, and /health/ says which form serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

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
        expected = forest.predict(np.array(IRIS_ROWS)).tolist()

        def every_worker_answered() -> bool:
            resp = server.predict()
            assert resp.status_code == 200, resp.text
            assert resp.json()["predictions"] == expected
            return all((probes / f"modules-{pid}.json").exists() for pid in pids)

        wait_for(every_worker_answered, 60, "a prediction from every worker", server.process,
                 interval=0.0)
        for pid in pids:
            modules = json.loads((probes / f"modules-{pid}.json").read_text())
            heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
            assert heavy == [], f"worker {pid} imported {heavy} to serve a compiled slot"
        model = server.health().json()["model"]
        assert (model["form"], model["estimator"]) == ("compiled", "RandomForestClassifier")

        # A model without a compiled form is served by its own loader, and says so.
        rng = np.random.default_rng(0)
        boosted = GradientBoostingClassifier(n_estimators=5).fit(
            rng.normal(size=(60, 4)), rng.integers(0, 2, 60))
        write_model(model_path, boosted)
        answer = server.admin("reload")
        assert answer.json().get("status") == "reloaded", answer.text
        # No request is sent until every worker has loaded it: the slot watcher loads a
        # new slot by itself (bounded wait; typically well under a second).
        generation = server.current_generation()
        wait_for(lambda: all(generation in server.loaded_generations().get(pid, ())
                             for pid in pids),
                 30, "every worker to load the new slot without a request", server.process)
        resp = server.predict()
        assert resp.json()["predictions"] == boosted.predict(np.array(IRIS_ROWS)).tolist()
        assert server.health().json()["model"]["form"] == "fallback"
    finally:
        stop_inferd(server)
