"""The demo model: an iris random forest registered in the configured MLflow registry.

`publish_demo` trains, logs `accuracy` and `f1_score`, registers the next version of
MLFLOW_MODEL_NAME, moves the stage (MLFLOW_MODEL_STAGE) and the alias
(MLFLOW_MODEL_ALIAS, else `champion`) to it, so a newcomer can try a reload.
Runs in the CLI process only; the iris data ships with scikit-learn (no network).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.common.settings import Settings

EXPERIMENT = "inferd-demo"


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    accuracy: float
    stage: str
    alias: str


def _client(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def has_any_version(settings: Settings) -> bool:
    client = _client(settings)
    found = client.search_model_versions(f"name='{settings.mlflow_model_name}'")
    return len(found) > 0


def _experiment_id(settings: Settings) -> str:
    client = _client(settings)
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if settings.mlflow_tracking_uri is None:
        # The embedded SQLite registry would otherwise put artifacts in ./mlruns of
        # whatever directory inferd happens to start in.
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        location = settings.artifact_root.as_uri()
    return str(client.create_experiment(EXPERIMENT, artifact_location=location))


def publish_demo(settings: Settings, n_estimators: int = 100, max_depth: int | None = None,
                 seed: int = 0) -> Published:
    if settings.mlflow_tracking_uri is None:
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    import mlflow
    import mlflow.sklearn
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    features, target = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.3, random_state=seed, stratify=target
    )
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                   random_state=seed)
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    accuracy = float(accuracy_score(y_test, predicted))
    f1 = float(f1_score(y_test, predicted, average="macro"))

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=_experiment_id(settings)):
            mlflow.log_params({"n_estimators": n_estimators, "max_depth": max_depth,
                               "seed": seed})
            mlflow.log_metrics({"accuracy": accuracy, "f1_score": f1})
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=settings.mlflow_model_name,
                input_example=x_test[:2],
                # Named, so MLflow does not spend seconds inferring them in a subprocess.
                pip_requirements=[f"scikit-learn=={sklearn_version}", "skops", "numpy"],
                # skops refuses the forest's node storage unless trusted; inferd
                # bounds-checks every tree it loads (inferd.model.artifact.check_trees).
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )
    version = str(info.registered_model_version)
    client = _client(settings)
    stage = settings.mlflow_model_stage
    alias = settings.mlflow_model_alias or "champion"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated; inferd still serves them
        client.transition_model_version_stage(
            settings.mlflow_model_name, version, stage, archive_existing_versions=True
        )
    client.set_registered_model_alias(settings.mlflow_model_name, alias, version)
    return Published(settings.mlflow_model_name, version, accuracy, stage, alias)


def write_local_demo(path: Path, n_estimators: int = 100, seed: int = 0) -> None:
    """For MODEL_SOURCE=local: save the demo forest as a joblib file at `path`."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    features, target = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(features, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    joblib.dump(model, tmp)
    os.replace(tmp, path)
