"""MLflow's xgboost, lightgbm and python_function flavors under real gunicorn, from a
real `mlflow server`: the boosters are compiled and every worker serves them without
importing MLflow, xgboost, lightgbm or scikit-learn; a custom PythonModel is served
through MLflow's pyfunc loader with its `code/` path; a model needing a package that is
not installed fails its reload naming it, and the model before keeps serving."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tests.integration.servers import InferdServer, MlflowServer, start_inferd, stop_inferd
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "flavors-model"
ALIAS = "champion"
HEAVY = ("sklearn", "pandas", "mlflow", "joblib", "skops", "scipy", "xgboost", "lightgbm")
CUSTOM_MODEL = '''
import numpy as np
from mlflow.pyfunc import PythonModel


class WeightedSum(PythonModel):
    """Defined in a code path, so a worker imports it from the model's code/ folder."""

    def predict(self, context, model_input, params=None):
        return model_input["f0"].to_numpy() * 2.0 + np.arange(len(model_input))
'''


def _register(mlflow_server: MlflowServer, log: Any, *requirements: str) -> str:
    """Log a model with `log(name=...)`, register it, point the alias at it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run():
        # Requirements given, so MLflow does not load the model in a subprocess to infer them.
        info = log(name="model", registered_model_name=NAME,
                   pip_requirements=[f"mlflow=={mlflow.__version__}", *requirements])
    version = str(info.registered_model_version)
    MlflowClient(mlflow_server.url).set_registered_model_alias(NAME, ALIAS, version)
    return version


def _rows() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = x.copy()
    x[np.random.default_rng(0).random(x.shape) < 0.05] = np.nan
    return x, y


def _frame(rows: np.ndarray) -> Any:
    """An input example with named columns: the signature names the DataFrame's columns."""
    import pandas

    return pandas.DataFrame(np.nan_to_num(rows), columns=[f"f{i}" for i in range(30)])


def _reload_everywhere(server: InferdServer, pids: set[int]) -> None:
    answer = server.admin("reload")
    assert answer.json().get("status") == "reloaded", answer.text
    generation = server.current_generation()
    wait_for(lambda: all(generation in server.loaded_generations().get(pid, ())
                         for pid in pids),
             120, "every worker to load the new slot", server.process)


def _heavy_imports(server: InferdServer, probes: Path, pids: set[int], rows: list[list[float]],
                   expected: list[Any]) -> dict[int, list[str]]:
    """Predict until every worker answered; each worker's heavy imports."""
    for probe in probes.glob("modules-*.json"):
        probe.unlink()

    def every_worker_answered() -> bool:
        resp = server.predict(rows)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == expected
        return all((probes / f"modules-{pid}.json").exists() for pid in pids)

    wait_for(every_worker_answered, 120, "a prediction from every worker", server.process,
             interval=0.0)
    heavy = {}
    for pid in pids:
        modules = json.loads((probes / f"modules-{pid}.json").read_text())
        heavy[pid] = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    return heavy


def test_boosters_compile_and_pyfunc_falls_back(mlflow_server: MlflowServer,
                                                tmp_path: Path) -> None:
    import lightgbm
    import mlflow.lightgbm
    import mlflow.pyfunc
    import mlflow.xgboost
    import xgboost

    x, y = _rows()
    query = np.nan_to_num(x[:5]).tolist()  # /predict/ takes finite numbers
    classifier = xgboost.XGBClassifier(n_estimators=30, max_depth=4, n_jobs=1).fit(x, y)
    _register(mlflow_server, lambda **kw: mlflow.xgboost.log_model(classifier, **kw),
              "xgboost")
    probes = tmp_path / "probes"
    probes.mkdir()
    server = start_inferd(tmp_path, {"MODEL_SOURCE": "mlflow",
                                     "MLFLOW_TRACKING_URI": mlflow_server.url,
                                     "MLFLOW_MODEL_NAME": NAME, "MLFLOW_MODEL_ALIAS": ALIAS,
                                     "INFERD_TEST_PROBE_DIR": str(probes),
                                     # pyfunc models are cloudpickled; the test wrote them
                                     "INFERD_ALLOW_PICKLE": "true"},
                          config="python:tests.integration.probe_conf")
    try:
        pids = server.worker_pids()
        expected = classifier.predict(np.asarray(query)).tolist()
        heavy = _heavy_imports(server, probes, pids, query, expected)
        assert all(h == [] for h in heavy.values()), heavy
        model = server.health().json()["model"]
        assert (model["form"], model["estimator"], model["format"]) == (
            "compiled", "XGBClassifier", "xgboost")

        # A native LightGBM Booster: its pyfunc predict answers P(1).
        booster = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1, n_jobs=1).fit(x, y)
        _register(mlflow_server, lambda **kw: mlflow.lightgbm.log_model(booster.booster_, **kw),
                  "lightgbm")
        _reload_everywhere(server, pids)
        expected = booster.booster_.predict(np.asarray(query)).tolist()
        heavy = _heavy_imports(server, probes, pids, query, expected)
        assert all(h == [] for h in heavy.values()), heavy
        model = server.health().json()["model"]
        assert (model["form"], model["estimator"]) == ("compiled", "LightGBMBooster")

        # A custom PythonModel from a code path: MLflow's pyfunc loader, in the workers.
        code = tmp_path / "weighted_sum_model.py"
        code.write_text(textwrap.dedent(CUSTOM_MODEL))
        sys.path.insert(0, str(tmp_path))
        try:
            import weighted_sum_model  # type: ignore[import-not-found]

            _register(mlflow_server, lambda **kw: mlflow.pyfunc.log_model(
                python_model=weighted_sum_model.WeightedSum(), code_paths=[str(code)],
                input_example=_frame(x[:2]), **kw), "pandas")
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("weighted_sum_model", None)
        _reload_everywhere(server, pids)
        expected = (np.asarray(query)[:, 0] * 2.0 + np.arange(len(query))).tolist()
        heavy = _heavy_imports(server, probes, pids, query, expected)
        assert all("mlflow" in h for h in heavy.values()), heavy
        model = server.health().json()["model"]
        assert (model["form"], model["format"]) == ("fallback", "pyfunc")
        assert "python_function" in model["fallback_reason"]

        # A model needing a package that is not installed: refused, the last one serves.
        _register(mlflow_server, lambda **kw: mlflow.pyfunc.log_model(
            python_model=_constant_model(), input_example=_frame(x[:2]), **kw),
            "inferd-absent-package==1.0")
        answer = server.admin("reload")
        assert answer.status_code == 500
        assert "inferd-absent-package==1.0" in answer.json()["detail"]
        assert server.predict(query).json()["predictions"] == expected
    finally:
        stop_inferd(server)


def _constant_model() -> Any:
    """A PythonModel defined here (pickled by value); its reload fails before loading."""
    from mlflow.pyfunc import PythonModel

    class Constant(PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return np.zeros(len(model_input))

    return Constant()
