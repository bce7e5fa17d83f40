"""MLflow models without a sklearn flavor: the xgboost and lightgbm flavors compile
through the reload's validation, a missing library is a load error naming the extra,
and a pyfunc model is a pickle whose requirements are checked before it loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.common.errors import ModelLoadError
from inferd.model import flavors
from inferd.model.pyfunc import missing_requirements
from inferd.reloading.validate import validate_staged


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    return x, (np.nan_to_num(x[:, 0]) > 0).astype(int)


def _save(kind: str, path: Path) -> Any:
    import lightgbm
    import mlflow.lightgbm
    import mlflow.xgboost
    import xgboost

    x, y = _data()
    if kind == "xgboost":
        model: Any = xgboost.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y)
        mlflow.xgboost.save_model(model, str(path), pip_requirements=["xgboost"])
    elif kind == "xgboost-booster":
        model = xgboost.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y).get_booster()
        mlflow.xgboost.save_model(model, str(path), pip_requirements=["xgboost"])
    elif kind == "lightgbm":
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
        mlflow.lightgbm.save_model(model, str(path), pip_requirements=["lightgbm"])
    elif kind == "lightgbm-booster":
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y).booster_
        mlflow.lightgbm.save_model(model, str(path), pip_requirements=["lightgbm"])
    else:  # an XGBRegressor behind a scaler, in the sklearn flavor, with skops
        import mlflow.sklearn
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), xgboost.XGBRegressor(n_estimators=5)).fit(x, y)
        mlflow.sklearn.save_model(model, str(path), pip_requirements=["xgboost"],
                                  serialization_format="skops",
                                  skops_trusted_types=["xgboost.core.Booster",
                                                       "xgboost.sklearn.XGBRegressor"])
    return model


@pytest.mark.parametrize("kind, estimator", [
    ("xgboost", "XGBClassifier"), ("xgboost-booster", "XGBoostBooster"),
    ("lightgbm", "LGBMClassifier"), ("lightgbm-booster", "LightGBMBooster"),
    ("sklearn-pipeline", "Pipeline"),
])
def test_library_flavors_compile(tmp_path: Path, kind: str, estimator: str) -> None:
    _save(kind, tmp_path / "model")
    facts = validate_staged(tmp_path / "model", allow_pickle=False, compile_into=tmp_path)
    # LGBMClassifier and the pipeline are saved with skops: their library types are
    # trusted only to compile, so compiled they are.
    assert (facts["form"], facts["estimator"], facts["n_features"]) == ("compiled", estimator, 4)


def test_a_missing_library_names_the_extra(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _save("xgboost", tmp_path / "model")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "xgboost" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install 'inferd\[xgboost\]'"):
        validate_staged(tmp_path / "model", allow_pickle=True, compile_into=tmp_path)


def test_an_unknown_flavor_is_named(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  onnx: {data: model.onnx}\n")
    with pytest.raises(ModelLoadError, match="flavors: onnx"):
        validate_staged(tmp_path, allow_pickle=True)


def _pyfunc_dir(tmp_path: Path, requirements: str | None = None,
                conda: str | None = None) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    python_model: python_model.pkl\n")
    if requirements is not None:
        (model / "requirements.txt").write_text(requirements)
    if conda is not None:
        (model / "conda.yaml").write_text(conda)
    return model


def test_pyfunc_models_are_pickles(tmp_path: Path) -> None:
    model = _pyfunc_dir(tmp_path)
    with pytest.raises(ModelLoadError, match="INFERD_ALLOW_PICKLE=false"):
        validate_staged(model, allow_pickle=False)
    assert flavors.locate(model, {"python_function": {}}) == (model, "pyfunc")


def test_missing_requirements_are_named(tmp_path: Path) -> None:
    model = _pyfunc_dir(tmp_path, requirements="# a comment\nmlflow==3.0\nnumpy\n"
                        "inferd-absent-package==1.0 ; python_version >= '3'\n"
                        "other-absent ; python_version < '3'\n-r extra.txt\n")
    assert missing_requirements(model) == ["inferd-absent-package==1.0 ; python_version >= '3'"]
    with pytest.raises(ModelLoadError, match="inferd-absent-package==1.0"):
        validate_staged(model, allow_pickle=True)


def test_conda_requirements_are_read_without_requirements_txt(tmp_path: Path) -> None:
    model = _pyfunc_dir(tmp_path, conda="dependencies:\n- python=3.11\n- pip:\n"
                        "  - numpy\n  - inferd-absent-package\n")
    assert missing_requirements(model) == ["inferd-absent-package"]
