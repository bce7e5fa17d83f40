"""What a protocol's codec hands the predict use case.

A codec decodes its body into one of two shapes and stops there; applying the model's
signature (columns by name, MLflow's type rules) and choosing between a float matrix and
a DataFrame is the model's business (`inferd.model.loaded`), so every protocol answers
the same request the same way.

- a float64 `numpy.ndarray` of shape (rows, features): positional numbers, already
  checked finite (inferd's `/predict/`, a v2 tensor `[rows, n_features]`);
- `Columns`: values by column name (MLflow's `dataframe_split` / `dataframe_records` /
  CSV, a v2 tensor named after a column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Columns:
    """Named columns of equal length, values as decoded (JSON values or a numpy array)."""

    names: tuple[str, ...]
    values: tuple[Sequence[Any], ...]  # one sequence a column, each `n_rows` long
    n_rows: int
    # Whether a model that reads columns by position (a tensor signature) takes these
    # in the order sent. MLflow does for a table (`dataframe_split`, `dataframe_records`)
    # and refuses named tensors (`inputs` / `instances` objects) and CSV.
    by_position: bool = True


ModelInput = np.ndarray | Columns

# What a caller may ask a model for; None asks for the model's own default (MLflow's
# `pyfunc_predict_fn` when the model was logged with one, else "predict").
OUTPUTS = ("predict", "predict_proba")
