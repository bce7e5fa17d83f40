"""The models the suite serves, trained once and cached between runs.

    <cache>/<sklearn version>/iris-rf100/          MLflow model directory (both servers)
    <cache>/<sklearn version>/iris-a.joblib, -b    two iris forests the reload alternates
    <cache>/<sklearn version>/large-et/            MLflow model dir, >= 100 MB pickled
    <cache>/<sklearn version>/bc-rf300.joblib      300-tree forest, breast-cancer data
    <cache>/<sklearn version>/bc-hgb300/           MLflow model dir: HistGradientBoosting-
                                                   Classifier, 300 iterations, breast cancer
    <cache>/<sklearn version>/bc-xgb300-<ver>/     MLflow xgboost flavor: XGBClassifier,
                                                   300 trees of depth 6, breast cancer
    <cache>/<sklearn version>/bc-lgb300-<ver>/     MLflow lightgbm flavor: LGBMClassifier,
                                                   300 trees of 31 leaves, breast cancer

The large forest is extra trees on pure-noise labels: every tree grows to one leaf per
sample, so it is large after seconds of training (a random forest of the same size
took 20 minutes here).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LARGE_ROWS, LARGE_TREES, LARGE_FEATURES = 15_000, 75, 20


@dataclass(frozen=True)
class Models:
    iris_dir: Path
    iris_a: Path
    iris_b: Path
    large_dir: Path
    bc_rf300: Path
    bc_hgb_dir: Path
    bc_xgb_dir: Path
    bc_lgb_dir: Path

    @property
    def large_pickle_mb(self) -> float:
        return sum(p.stat().st_size for p in self.large_dir.glob("*.pkl")) / 2**20


def _save_mlflow(model: Any, path: Path, example: Any) -> None:
    import mlflow.sklearn

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # cloudpickle: what both servers load as is (MLflow 3.x defaults to skops, whose
    # loader asks for an explicit trust list for tree nodes).
    mlflow.sklearn.save_model(model, str(tmp), input_example=example,
                              serialization_format="cloudpickle")
    tmp.rename(path)


def _libraries() -> tuple[str, str]:
    """xgboost's and lightgbm's versions; exits saying how to install them if missing."""
    try:
        import lightgbm
        import xgboost
    except ImportError as exc:
        raise SystemExit(f"the suite needs {exc.name}: pip install -e '.[xgboost,lightgbm]'"
                         ) from exc
    return xgboost.__version__, lightgbm.__version__


def _save_boosters(models: Models, xb: Any, yb: Any) -> None:
    """The two library models, logged with their own MLflow flavors (the xgboost
    flavor saves the booster itself; the lightgbm flavor saves an LGBMClassifier with
    skops, MLflow 3's default)."""
    import lightgbm
    import mlflow.lightgbm
    import mlflow.xgboost
    import xgboost

    for path, flavor, make, requirement in (
            (models.bc_xgb_dir, mlflow.xgboost, lambda: xgboost.XGBClassifier(
                n_estimators=300, max_depth=6, random_state=0), "xgboost"),
            (models.bc_lgb_dir, mlflow.lightgbm, lambda: lightgbm.LGBMClassifier(
                n_estimators=300, num_leaves=31, random_state=0, verbose=-1), "lightgbm")):
        if path.exists():
            continue
        print(f"training {path.name} (once) ...", flush=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        flavor.save_model(make().fit(xb, yb), str(tmp), input_example=xb[:2],
                          pip_requirements=[requirement])
        tmp.rename(path)


def prepare(cache: Path) -> Models:
    import joblib
    import numpy as np
    import sklearn
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    root = cache / f"sklearn-{sklearn.__version__}"
    root.mkdir(parents=True, exist_ok=True)
    xgb_version, lgb_version = _libraries()
    models = Models(root / "iris-rf100", root / "iris-a.joblib", root / "iris-b.joblib",
                    root / f"large-et{LARGE_TREES}x{LARGE_ROWS}", root / "bc-rf300.joblib",
                    root / "bc-hgb300", root / f"bc-xgb300-{xgb_version}",
                    root / f"bc-lgb300-{lgb_version}")
    x, y = load_iris(return_X_y=True)
    if not models.iris_dir.exists():
        print("training the iris forest (once) ...", flush=True)
        _save_mlflow(RandomForestClassifier(100, random_state=0).fit(x, y), models.iris_dir,
                     x[:2])
    for path, seed in ((models.iris_a, 1), (models.iris_b, 2)):
        if not path.exists():
            joblib.dump(RandomForestClassifier(100, random_state=seed).fit(x, y), path)
    if not models.large_dir.exists():
        print(f"training the large forest (once; {LARGE_TREES} extra trees on "
              f"{LARGE_ROWS} noisy rows) ...", flush=True)
        rng = np.random.default_rng(0)
        noisy = rng.normal(size=(LARGE_ROWS, LARGE_FEATURES))
        forest = ExtraTreesClassifier(LARGE_TREES, random_state=0).fit(
            noisy, rng.integers(0, 3, LARGE_ROWS))
        _save_mlflow(forest, models.large_dir, noisy[:2])
    xb, yb = load_breast_cancer(return_X_y=True)
    if not models.bc_rf300.exists():
        joblib.dump(RandomForestClassifier(300, random_state=0).fit(xb, yb), models.bc_rf300)
    if not models.bc_hgb_dir.exists():
        hgb = HistGradientBoostingClassifier(max_iter=300, early_stopping=False,
                                             random_state=0).fit(xb, yb)
        _save_mlflow(hgb, models.bc_hgb_dir, xb[:2])
    _save_boosters(models, xb, yb)
    return models


@dataclass(frozen=True)
class ScoringModels:
    """The MLflow models `benchmarks.invocations` serves."""

    iris_named_dir: Path  # iris forest, 100 trees, a named-column signature
    pipeline_dir: Path  # OneHotEncoder on a string column + a numeric column


def prepare_scoring(cache: Path) -> ScoringModels:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = cache / f"sklearn-{sklearn.__version__}"
    root.mkdir(parents=True, exist_ok=True)
    models = ScoringModels(root / "iris-rf100-named", root / "pipeline-onehot")

    def save(model: Any, path: Path, signature: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.sklearn.save_model(model, str(tmp), signature=signature,
                                  serialization_format="cloudpickle",
                                  pip_requirements=["scikit-learn"])
        tmp.rename(path)

    if not models.iris_named_dir.exists():
        x, y = load_iris(return_X_y=True, as_frame=True)
        forest = RandomForestClassifier(100, random_state=0).fit(x, y)
        save(forest, models.iris_named_dir, infer_signature(x, forest.predict(x)))
    if not models.pipeline_dir.exists():
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], 200),
                              "size": rng.normal(size=200)})
        label = ((frame["color"] == "red") ^ (frame["size"] > 0)).astype(int)
        pipeline = Pipeline([
            ("columns", ColumnTransformer([
                ("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                ("size", "passthrough", ["size"])])),
            ("classifier", LogisticRegression()),
        ]).fit(frame, label)
        save(pipeline, models.pipeline_dir, infer_signature(frame, pipeline.predict(frame)))
    return models
