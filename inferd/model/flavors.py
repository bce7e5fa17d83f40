"""MLflow models that are not scikit-learn's own flavor: which loader each one needs.

`locate` is called by `inferd.model.artifact.locate_artifact` for an MLflow model
directory without a `sklearn` flavor; it picks, in this order:

    xgboost     the booster file (`data`), format "xgboost": an XGBClassifier,
                XGBRegressor or native Booster saved by the library itself (no pickle)
    lightgbm    a native Booster's text file, format "lightgbm"; an LGBMClassifier or
                LGBMRegressor is pickled (or skops) by MLflow's sklearn code, and is
                loaded with the same trust rules as any scikit-learn model
    python_function  everything else, format "pyfunc" (`inferd.model.pyfunc`)

`load` turns a located xgboost / lightgbm file into an object with scikit-learn's
`predict` (and `predict_proba` for the classifiers) that predicts as the flavor's
pyfunc does: the slot compiles from it (`inferd.model.compiled.xgboost_trees`,
`lightgbm_trees`) in the process doing the reload, and a worker loads it only when the
compiled form was refused. xgboost and lightgbm are optional extras: a model that needs
one that is not installed fails its reload with a message naming `pip install`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import ModelLoadError
from inferd.model.paths import confined_file

FORMATS = {"xgboost", "lightgbm", "pyfunc"}
_EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm"}
_XGB_BOOSTER = "xgboost.core.Booster"
_LGB_BOOSTER = "lightgbm.basic.Booster"


def require(package: str) -> None:
    """Refuse a model whose library is not installed, naming the extra that brings it."""
    if importlib.util.find_spec(package) is None:
        raise ModelLoadError(
            f"the model needs {package}, which is not installed here: "
            f"pip install 'inferd[{_EXTRAS.get(package, package)}]'")


def locate(model_dir: Path, flavors: dict[str, Any]) -> tuple[Path, str]:
    """(path, format) of the model in an MLflow model directory without a sklearn
    flavor: a format of FORMATS, or a pickle or skops format for an LGBM* estimator."""
    for library in ("xgboost", "lightgbm"):
        flavor = flavors.get(library)
        if isinstance(flavor, dict):
            require(library)
            default = "model.xgb" if library == "xgboost" else "model.lgb"
            path = confined_file(model_dir, flavor.get("data", default),
                                 f"the MLmodel's {library} data")
            model_class = str(flavor.get("model_class", _XGB_BOOSTER if library == "xgboost"
                                         else _LGB_BOOSTER))
            if library == "lightgbm" and model_class != _LGB_BOOSTER:
                # LGBMClassifier / LGBMRegressor: saved by mlflow.sklearn's code.
                return path, str(flavor.get("serialization_format", "cloudpickle"))
            return path, library
    if "python_function" in flavors:
        return model_dir, "pyfunc"
    names = ", ".join(sorted(flavors)) or "none"
    raise ModelLoadError(f"the MLflow model has no flavor inferd can serve (flavors: "
                         f"{names}); inferd serves sklearn, xgboost, lightgbm and "
                         "python_function models")


def load(path: Path, fmt: str) -> Any:
    """Deserialize a located model of one of FORMATS."""
    if fmt == "pyfunc":
        from inferd.model.pyfunc import load_pyfunc

        return load_pyfunc(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path.name} is missing from the slot")
    if fmt == "lightgbm":
        require("lightgbm")
        import lightgbm

        return LightGBMBooster(lightgbm.Booster(model_file=str(path)))
    require("xgboost")
    return _load_xgboost(path, _model_class(path.parent, "xgboost"))


def _model_class(model_dir: Path, flavor: str) -> str:
    import yaml

    conf = yaml.safe_load((model_dir / "MLmodel").read_text())
    return str(conf["flavors"][flavor].get("model_class", _XGB_BOOSTER))


def _load_xgboost(path: Path, model_class: str) -> Any:
    import xgboost

    if model_class == _XGB_BOOSTER:
        return XGBoostBooster(xgboost.Booster(model_file=str(path)))
    # As mlflow.xgboost does: the class named in MLmodel, then its load_model. Only the
    # xgboost package's own classes, since this names what is instantiated.
    module, _, name = model_class.rpartition(".")
    if not module.startswith("xgboost.") or not hasattr(xgboost, name):
        raise ModelLoadError(f"the xgboost flavor names model class {model_class!r}, "
                             "which is not one of xgboost's")
    model = getattr(xgboost, name)()
    model.load_model(str(path))
    return model


class XGBoostBooster:
    """A native xgboost Booster, predicting as its MLflow flavor's pyfunc does:
    `Booster.predict(DMatrix(rows))` (probabilities for the logistic and softprob
    objectives, float32)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.n_features_in_ = int(booster.num_features())

    def predict(self, rows: np.ndarray) -> np.ndarray:
        import xgboost

        # The flavor passes a DataFrame whose column names the booster checks; rows
        # here are positional, in the training order.
        return np.asarray(self.booster.predict(xgboost.DMatrix(rows),
                                               validate_features=False))


class LightGBMBooster:
    """A native lightgbm Booster, predicting as its MLflow flavor's pyfunc does:
    `Booster.predict(rows)` (probabilities for binary and multiclass)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.n_features_in_ = int(booster.num_feature())

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(rows))
