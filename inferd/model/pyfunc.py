"""Every other MLflow model, served through MLflow's own pyfunc loader.

A custom `PythonModel`, or a flavor inferd does not know, is loaded with
`mlflow.pyfunc.load_model` (which puts the model's `code/` paths on sys.path and runs
its loader module), in the process doing a reload and then in each worker that serves
its slot, never in the others. Its files are cloudpickled, or loaded by code the model
names, so it counts as a pickle: INFERD_ALLOW_PICKLE=false refuses it
(`inferd.model.artifact.PICKLE_FORMATS`).

Before loading, the model's requirements (`requirements.txt`, else the pip list of
`conda.yaml`) are checked against what is installed (`importlib.metadata`): a package
that is missing fails the reload with a message naming it, instead of an ImportError
from deep inside the model's code. A version that differs is only logged, as MLflow does.

A pyfunc model takes a DataFrame: `PyfuncModel.predict` builds one from the float
matrix (column names and integer columns from the model's signature; pandas imported
then, in that worker only), or passes the matrix on for a tensor signature.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import BadRequestError, ModelLoadError

log = logging.getLogger("inferd.model")

_INTEGER_TYPES = {"integer", "long"}


def load_pyfunc(model_dir: Path) -> PyfuncModel:
    missing = missing_requirements(model_dir)
    if missing:
        raise ModelLoadError(
            f"the model needs packages that are not installed here: {', '.join(missing)} "
            f"(pip install {' '.join(repr(m) for m in missing)}, or log the model without them)")
    import mlflow.pyfunc

    try:
        model = mlflow.pyfunc.load_model(str(model_dir))
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"the model imports {exc.name}, which is not installed here "
                             f"(pip install {exc.name})") from exc
    return PyfuncModel(model)


def requirements(model_dir: Path) -> list[str]:
    """The model's pip requirements: requirements.txt, else conda.yaml's pip list."""
    text = model_dir / "requirements.txt"
    if text.is_file():
        lines = text.read_text().splitlines()
    else:
        lines = _conda_pip(model_dir / "conda.yaml")
    return [line.split("#", 1)[0].strip() for line in lines
            if line.split("#", 1)[0].strip() and not line.lstrip().startswith("-")]


def _conda_pip(path: Path) -> list[str]:
    if not path.is_file():
        return []
    import yaml

    try:
        conf = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return []
    for dependency in conf.get("dependencies") or []:
        if isinstance(dependency, dict) and isinstance(dependency.get("pip"), list):
            return [str(p) for p in dependency["pip"]]
    return []


def missing_requirements(model_dir: Path) -> list[str]:
    """The requirements whose distribution is not installed (versions are not compared:
    MLflow itself only warns about them)."""
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in requirements(model_dir):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            log.warning("Unreadable model requirement %r; not checked", line)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
    return missing


class PyfuncModel:
    """An MLflow pyfunc model with scikit-learn's `predict(rows)`."""

    not_compiled = "an MLflow python_function model has no compiled form; served by " \
                   "MLflow's pyfunc loader in the workers that serve this slot"

    def __init__(self, model: Any) -> None:
        self.model = model
        schema = model.metadata.get_input_schema()
        self.tensor = bool(schema is not None and schema.is_tensor_spec())
        self.columns: list[str] | None = None
        self.integer_columns: list[str] = []
        if schema is not None and not self.tensor and schema.has_input_names():
            self.columns = [str(n) for n in schema.input_names()]
            self.integer_columns = [str(spec.name) for spec in schema.inputs
                                    if _type_name(spec) in _INTEGER_TYPES]
        if self.columns is not None:
            self.n_features_in_ = len(self.columns)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        from mlflow.exceptions import MlflowException

        data: Any = rows
        if not self.tensor:
            data = self._frame(rows)
        try:
            out = self.model.predict(data)
        except MlflowException as exc:  # the signature refused the input
            raise BadRequestError(f"the model rejected the input: {exc.message}") from exc
        to_numpy = getattr(out, "to_numpy", None)
        return np.asarray(to_numpy() if to_numpy is not None else out)

    def _frame(self, rows: np.ndarray) -> Any:
        import pandas

        frame = pandas.DataFrame(rows, columns=self.columns)
        for name in self.integer_columns:
            column = frame[name]
            if bool((column == np.round(column)).all()):  # MLflow refuses float -> long
                frame[name] = column.astype(np.int64)
        return frame


def _type_name(spec: Any) -> str:
    kind = getattr(spec, "type", None)
    name = getattr(kind, "name", kind)
    return re.sub(r"^DataType\.", "", str(name))
