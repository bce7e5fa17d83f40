"""Load the model of a slot and predict with it.

A slot's `model/` directory holds either an MLflow model directory (an `MLmodel`
file naming the sklearn flavor's file and serialization format) or one model
file. What inferd trusts, deliberately:

- **skops** files load with an explicit allow-list (`SKOPS_TRUSTED_TYPES`) of the
  types skops itself does not trust by default: the few internal classes that
  scikit-learn's own models contain. The model's own `skops_trusted_types` in its
  MLmodel file is ignored, since a crafted model could list anything there.
  scikit-learn indexes tree nodes without bounds checks, so every loaded tree's
  children, features and value rows are checked first (`check_trees`): a hostile
  file is refused instead of reading out of bounds.
- **pickle / joblib / cloudpickle** can run arbitrary code when loaded. The caller
  says whether this model's source may hand inferd pickle (`inferd.model.trust`: the
  operator's local MODEL_PATH yes, a registry only with INFERD_ALLOW_PICKLE=true).
- XGBoost and LightGBM boosters load with their own libraries, and any other MLflow
  model with MLflow's pyfunc loader, which counts as pickle (`inferd.model.flavors`).
- A scikit-learn `InconsistentVersionWarning` at load (the model was pickled by
  another scikit-learn version) is a load failure, not a warning.

scikit-learn, joblib and skops are imported lazily, when a slot is loaded. A slot
written with a compiled form (`inferd.model.compiled`, manifest `"form": "compiled"`) is
served from its memory-mapped arrays instead, and its worker never imports them.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import ModelLoadError
from inferd.model.paths import confined_file
from inferd.model.walk import reachable_estimators

# skops trusts scikit-learn's estimators and NumPy's arrays by itself; these are the
# types it asks about when a scikit-learn model is saved (found by saving every model
# family inferd compiles or serves: trees, forests, gradient boosting, linear models,
# SVMs, scaler pipelines). Classes only, never a function, which skops could call at
# predict time, and only classes whose loaded state `check_trees` validates: KD and ball
# trees (neighbour models' default index) are left out, since scikit-learn walks their
# node and index arrays unchecked and inferd does not validate them (a neighbours model
# with algorithm="brute" holds none). A type outside the list is refused, naming it; save
# such a model with joblib (and opt in with INFERD_ALLOW_PICKLE, inferd.model.trust) if
# you trust its source.
SKOPS_TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})
# Trusted only in the process doing a reload, only to compile the model: a
# HistGradientBoosting* with categorical features keeps functools.partial(check_array)
# in its preprocessor (`BaseHistGradientBoosting._preprocess_X`). Its compiled form
# needs neither; a worker never loads such a file, and if it does not compile, the
# reload fails naming them (inferd.reloading.validate).
# The same for XGBoost's and LightGBM's estimators saved with skops (MLflow's lightgbm
# flavor does, and the sklearn flavor for XGB*/LGBM*): a booster's state is the
# library's own model format (XGBoost's raw bytes, LightGBM's text), parsed by it.
COMPILE_ONLY_TRUSTED_TYPES = frozenset({
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
})
# "pyfunc": MLflow's pyfunc loader unpickles the model, or runs code it names.
PICKLE_FORMATS = {"pickle", "joblib", "cloudpickle", "pyfunc"}
_SUFFIX_FORMATS = {
    ".skops": "skops",
    ".joblib": "joblib",
    ".pkl": "joblib",  # joblib.load reads plain pickles too
    ".pickle": "joblib",
}


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str
    input_example: list[list[float]] | None = None


def locate_artifact(model_dir: Path) -> Artifact:
    """Find the model file in a slot's `model/` directory and how it is serialized."""
    mlmodel = model_dir / "MLmodel"
    if mlmodel.is_file():
        import yaml

        try:
            conf = yaml.safe_load(mlmodel.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ModelLoadError(f"cannot read {mlmodel}: {exc}") from exc
        if not isinstance(conf, dict) or not isinstance(conf.get("flavors") or {}, dict):
            raise ModelLoadError(f"{mlmodel} is not an MLflow model description")
        flavor = (conf.get("flavors") or {}).get("sklearn")
        if not flavor:
            from inferd.model import flavors

            path, fmt = flavors.locate(model_dir, conf.get("flavors") or {})
            return Artifact(path, fmt, _input_example(model_dir))
        fmt = flavor.get("serialization_format", "cloudpickle")
        path = confined_file(model_dir, flavor.get("pickled_model", "model.pkl"),
                             "the MLmodel's pickled_model")
        return Artifact(path, fmt, _input_example(model_dir))
    files = [p for p in model_dir.iterdir() if p.suffix in _SUFFIX_FORMATS]
    if len(files) != 1:
        raise ModelLoadError(
            f"expected one model file (*.skops, *.joblib, *.pkl) in {model_dir}, "
            f"found {len(files)}"
        )
    return Artifact(confined_file(model_dir, files[0].name, "the model file"),
                    _SUFFIX_FORMATS[files[0].suffix])


def _input_example(model_dir: Path) -> list[list[float]] | None:
    """The MLflow input example as rows of numbers, when it is one."""
    path = model_dir / "input_example.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict):
        data = data.get("inputs", data.get("data"))
    try:
        rows = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return rows.tolist() if rows.ndim == 2 and rows.size else None


class UntrustedTypesError(ModelLoadError):
    """A skops file names types outside the trust list."""

    def __init__(self, message: str, refused: list[str]) -> None:
        super().__init__(message)
        self.refused = refused

    @property
    def compile_only(self) -> bool:
        return set(self.refused) <= COMPILE_ONLY_TRUSTED_TYPES


def load_estimator(artifact: Artifact, allow_pickle: bool, to_compile: bool = False) -> Any:
    """Deserialize the estimator; raise ModelLoadError saying why it cannot be."""
    if artifact.format in PICKLE_FORMATS and not allow_pickle:
        raise ModelLoadError(
            f"{artifact.path.name} is a {artifact.format} file, which runs any code it holds "
            "when loaded: inferd loads pickle from the local MODEL_PATH unless "
            "INFERD_ALLOW_PICKLE=false, and from a registry only with "
            "INFERD_ALLOW_PICKLE=true; save the model with skops (MLflow's default), or opt "
            "in if you trust everyone who can register a version"
        )
    if not artifact.path.exists():  # a file, or an MLflow pyfunc model's directory
        raise ModelLoadError(f"model file {artifact.path.name} is missing from the slot")
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return _deserialize(artifact, to_compile)
        except InconsistentVersionWarning as exc:
            raise ModelLoadError(
                f"scikit-learn version mismatch: the model was saved with "
                f"{exc.original_sklearn_version}, this server runs {exc.current_sklearn_version}; "
                "retrain or pin the same version"
            ) from exc
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load {artifact.path.name} ({artifact.format}): {exc}"
            ) from exc


def _deserialize(artifact: Artifact, to_compile: bool) -> Any:
    from inferd.model import flavors

    if artifact.format in flavors.FORMATS:  # xgboost, lightgbm, MLflow pyfunc
        return flavors.load(artifact.path, artifact.format)
    if artifact.format == "skops":
        import skops.io

        trusted = SKOPS_TRUSTED_TYPES | (COMPILE_ONLY_TRUSTED_TYPES if to_compile else set())
        untrusted = skops.io.get_untrusted_types(file=artifact.path)
        refused = [t for t in untrusted if t not in trusted]
        if refused:
            raise UntrustedTypesError(
                f"{artifact.path.name} contains types inferd does not trust: "
                f"{', '.join(refused[:5])}", refused)
        return skops.io.load(artifact.path, trusted=untrusted)
    if artifact.format == "cloudpickle":
        import cloudpickle

        with open(artifact.path, "rb") as fh:
            return cloudpickle.load(fh)
    if artifact.format == "pickle":
        with open(artifact.path, "rb") as fh:
            return pickle.load(fh)
    if artifact.format == "joblib":
        import joblib

        return joblib.load(artifact.path)
    raise ModelLoadError(f"unknown serialization format {artifact.format!r}")


def load_model_dir(model_dir: Path, allow_pickle: bool,
                   to_compile: bool = False) -> tuple[Artifact, Any]:
    """Locate, deserialize and tree-check the model in a slot's `model/` directory:
    the one set of rules for the reloading process and for every worker (`to_compile`:
    the reloading process, also trusting COMPILE_ONLY_TRUSTED_TYPES)."""
    artifact = locate_artifact(model_dir)
    estimator = load_estimator(artifact, allow_pickle, to_compile)
    check_trees(estimator)
    return artifact, estimator


def check_trees(estimator: Any) -> None:
    """Refuse a model whose tree node arrays point outside themselves."""
    for part in reachable_estimators(estimator):
        tree = getattr(part, "tree_", None)
        if tree is None or not hasattr(tree, "children_left"):
            continue
        nodes = int(tree.node_count)
        n_features = int(getattr(part, "n_features_in_", tree.n_features))
        left, right, feature = tree.children_left, tree.children_right, tree.feature
        leaf = left == -1
        ok = (
            len(left) == len(right) == len(feature) == nodes
            and tree.value.shape[0] == nodes
            and bool(((left >= -1) & (left < nodes)).all())
            and bool(((right >= -1) & (right < nodes)).all())
            # scikit-learn stores nodes in pre-order: a child always comes after its
            # parent, which rules out cycles (a predict that never returns).
            and bool((left[~leaf] > np.flatnonzero(~leaf)).all())
            and bool((right[~leaf] > np.flatnonzero(~leaf)).all())
            and bool((leaf == (right == -1)).all())
            and bool(((feature[~leaf] >= 0) & (feature[~leaf] < n_features)).all())
        )
        if not ok:
            raise ModelLoadError(
                f"{type(part).__name__} has tree nodes that point outside the tree "
                "(corrupt or hostile model file); refusing to load it"
            )
    for part in reachable_estimators(estimator):
        for predictor in [p for it in getattr(part, "_predictors", None) or [] for p in it]:
            _check_hist_predictor(part, predictor)


def _check_hist_predictor(part: Any, predictor: Any) -> None:
    """The same for a HistGradientBoosting* predictor, which scikit-learn indexes
    without bounds checks too: children after their parent and inside the node array,
    features and category bitsets in range."""
    nodes = predictor.nodes
    count = len(nodes)
    inner = ~nodes["is_leaf"].astype(bool)
    index = np.flatnonzero(inner)
    left, right = nodes["left"][inner].astype(np.int64), nodes["right"][inner].astype(np.int64)
    categorical = inner & nodes["is_categorical"].astype(bool)
    ok = (
        count > 0
        and bool(((left > index) & (left < count) & (right > index) & (right < count)).all())
        and bool((nodes["feature_idx"][inner] < int(part.n_features_in_)).all())
        and bool((nodes["bitset_idx"][categorical]
                  < len(predictor.raw_left_cat_bitsets)).all())
    )
    if not ok:
        raise ModelLoadError(
            f"{type(part).__name__} has tree nodes that point outside the tree "
            "(corrupt or hostile model file); refusing to load it"
        )

