"""A slot's model loaded in this worker: the compiled form when the slot has one, else
the estimator (`inferd.model.artifact`). `load_slot` verifies the slot's files first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from inferd.common.errors import BadRequestError
from inferd.model.artifact import load_model_dir
from inferd.model.enforce import InputRules
from inferd.model.inputs import OUTPUTS, ModelInput
from inferd.model.trust import pickle_allowed, slot_source
from inferd.store.slots import verify_files


@dataclass
class LoadedModel:
    """A slot's model, loaded in this process. Immutable once built; swapped whole."""

    generation: int
    manifest: dict[str, Any]
    estimator: Any  # a scikit-learn estimator, or a CompiledModel (form "compiled")
    n_features: int | None
    form: str = "fallback"
    loaded_at: float = field(default_factory=time.time)
    # How requests become the model's input (signature, matrix or DataFrame).
    rules: InputRules = field(init=False)

    def __post_init__(self) -> None:
        self.rules = InputRules.from_manifest(self.manifest, self.n_features)

    # PERF: cached, as the manifest does not change; read once a request or more.
    @cached_property
    def version(self) -> str:
        return str(self.manifest.get("version"))

    @cached_property
    def default_output(self) -> str:
        """MLflow's `pyfunc_predict_fn` when the model was logged with one."""
        return str(self.manifest.get("predict_fn") or "predict")

    @property
    def classes(self) -> list[Any] | None:
        """The class of each predict_proba column; None for a regressor."""
        return self.manifest.get("classes")

    def predict(self, inputs: ModelInput, output: str = "predict") -> list[Any]:
        """Check `inputs` against the model's signature (`inferd.model.enforce`) and
        answer `output` for each row: a label or value, or a row of probabilities."""
        if output not in OUTPUTS:
            raise BadRequestError(f"unknown output {output!r}; expected one of {OUTPUTS}")
        if output == "predict_proba" and not self.classes:
            raise BadRequestError("this model has no predict_proba: it is not a classifier")
        prepared = model_input(self.rules, inputs)
        try:
            out = getattr(self.estimator, output)(prepared)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # scikit-learn validates its input with ValueError (e.g. a finite float64 that
            # overflows the float32 trees compute in), and a pipeline over a DataFrame
            # fails with TypeError or KeyError on values it cannot encode: the client's
            # input, not a 500 (mlflow models serve answers these 400 too).
            raise BadRequestError(f"the model rejected the input: {exc}") from exc
        return np.asarray(out).tolist()

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": m.get("name"),
            "version": self.version,
            "stage": m.get("stage"),
            "alias": m.get("alias"),
            "source": m.get("descriptor", {}).get("source"),
            "uri": m.get("uri"),
            "run_id": m.get("descriptor", {}).get("run_id"),
            "generation": self.generation,
            "format": m.get("artifact", {}).get("format"),
            "form": self.form,
            "fallback_reason": m.get("fallback_reason"),
            "estimator": m.get("estimator") or type(self.estimator).__name__,
            "n_features": self.n_features,
            "published_at": m.get("published_at"),
            "loaded_at": self.loaded_at,
        }


def model_input(rules: InputRules, inputs: ModelInput) -> Any:
    """What the model takes for `inputs`: a float64 matrix, or (for a "frame" model,
    importing pandas in this worker the first time) a DataFrame."""
    if rules.input_kind == "frame":
        from inferd.model.frame import to_frame

        return to_frame(inputs, rules)
    return rules.matrix(inputs)


def load_slot(slot_dir: Path, manifest: dict[str, Any],
              allow_pickle: bool | None) -> LoadedModel:
    """Verify a published slot's files against its manifest, then load its model:
    the compiled form when the slot has one, else the estimator. `allow_pickle` is
    INFERD_ALLOW_PICKLE, applied to the source the manifest names (inferd.model.trust)."""
    # Every file, including a model file the compiled form does not read: a damaged slot
    # is refused whole.
    verify_files(slot_dir, manifest)
    if manifest.get("form") == "compiled":
        from inferd.model.compiled.compile import load_compiled

        compiled = load_compiled(slot_dir)
        return LoadedModel(
            generation=int(manifest["generation"]),
            manifest=manifest,
            estimator=compiled,
            n_features=compiled.n_features,
            form="compiled",
        )
    _, estimator = load_model_dir(slot_dir / "model",
                                  pickle_allowed(allow_pickle, slot_source(manifest)))
    return LoadedModel(
        generation=int(manifest["generation"]),
        manifest=manifest,
        estimator=estimator,
        n_features=_n_features(estimator),
    )


def _n_features(estimator: Any) -> int | None:
    n = getattr(estimator, "n_features_in_", None)
    return int(n) if n is not None else None
