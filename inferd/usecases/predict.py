"""The one predict use case: rows in, predictions out, with the version that computed them.

Called by every protocol's resource in a gunicorn worker thread, once a request, after
its codec decoded the body into a float matrix or named columns
(`inferd.model.inputs`). The model is read once per request
(`ModelHolder.current()`), so a reload that lands mid-request cannot mix two models in
one answer, and the version returned is the one that computed the predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from inferd.common import metrics
from inferd.common.errors import ServiceUnavailableError
from inferd.model.inputs import ModelInput
from inferd.model.loaded import LoadedModel
from inferd.serving.holder import ModelHolder


class Prediction(NamedTuple):
    """PERF: a named tuple, immutable as a frozen dataclass and made in half the time
    (one a request)."""

    values: list[Any]  # one prediction a row: a label or value, or a row of probabilities
    version: str  # the model version that computed `values`
    output: str = "predict"  # which of inferd.model.inputs.OUTPUTS computed `values`
    classes: list[Any] | None = None  # the class of each probability column (predict_proba)


class Predict:
    """Shared by the worker's threads; holds no per-request state."""

    def __init__(self, holder: ModelHolder | None) -> None:
        # None: a test's service without a holder. A holder whose store failed to open
        # keeps trying to open it (WorkerService says why).
        self._holder = holder
        self._current: Callable[[], LoadedModel] = (
            holder.current if holder is not None else _unavailable)

    @property
    def available(self) -> bool:
        return self._holder is not None and self._holder.available

    def check_available(self) -> None:
        """Raise before a request's body is read when this worker cannot predict at
        all, so that such a worker answers 503 whatever it is sent."""
        if not self.available:
            raise ServiceUnavailableError

    def __call__(self, inputs: ModelInput, output: str | None = None) -> Prediction:
        """`output` None answers with the model's default output (its MLflow
        `pyfunc_predict_fn`, else "predict")."""
        model = self._current()  # one reference for the whole request
        output = output or model.default_output
        values = model.predict(inputs, output)
        metrics.rows_predicted(len(values))
        classes = model.classes if output == "predict_proba" else None
        return Prediction(values, model.version, output, classes)


def _unavailable() -> LoadedModel:
    raise ServiceUnavailableError
