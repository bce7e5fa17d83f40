"""Scalers in front of a compiled model, as element-wise steps on the rows.

A step is `{"op": "sub" | "div" | "mul" | "add", "operand": <array of n_features>}`,
applied to a float64 copy of the rows in order, exactly as the scalers' `transform`
does in place: StandardScaler (`-= mean_`, `/= scale_`), RobustScaler (`-= center_`,
`/= scale_`), MinMaxScaler (`*= scale_`, `+= min_`), MaxAbsScaler (`/= scale_`).
Anything else in a pipeline (a clipping MinMaxScaler, an imputer, a column
transformer...) makes the whole pipeline fall back to its own loader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from inferd.model.compiled.format import ArrayReader, ArrayWriter, CompiledFormatError, Unsupported

_OPS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "sub": np.subtract, "div": np.true_divide, "mul": np.multiply, "add": np.add,
}


def scaler_steps(scaler: Any) -> list[tuple[str, np.ndarray]]:
    """The element-wise steps of one fitted scaler, or Unsupported."""
    name = type(scaler).__name__
    if name == "StandardScaler":
        steps = [("sub", scaler.mean_)] if scaler.with_mean else []
        return steps + ([("div", scaler.scale_)] if scaler.with_std else [])
    if name == "RobustScaler":
        steps = [("sub", scaler.center_)] if scaler.with_centering else []
        return steps + ([("div", scaler.scale_)] if scaler.with_scaling else [])
    if name == "MinMaxScaler" and not scaler.clip:
        return [("mul", scaler.scale_), ("add", scaler.min_)]
    if name == "MaxAbsScaler":
        return [("div", scaler.scale_)]
    raise Unsupported(f"pipeline step {name}")


def compile_steps(transforms: list[Any], writer: ArrayWriter) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for transform in transforms:
        if transform is None or transform == "passthrough":
            continue
        for op, operand in scaler_steps(transform):
            operand = np.asarray(operand)
            if operand.dtype != np.float64 or operand.ndim != 1:
                raise Unsupported(f"{type(transform).__name__} with {operand.dtype} operands")
            steps.append({"op": op,
                          "operand": writer.add(f"step{len(steps)}_{op}", operand)})
    return steps


class Steps:
    """The opened element-wise steps; `apply` returns transformed copies."""

    def __init__(self, specs: Any, reader: ArrayReader, n_features: int) -> None:
        if not isinstance(specs, list):
            raise CompiledFormatError("pipeline steps must be a list")
        self.steps: list[tuple[Callable[..., Any], np.ndarray]] = []
        for spec in specs:
            op = _OPS.get(str(spec.get("op")) if isinstance(spec, dict) else "")
            if op is None:
                raise CompiledFormatError(f"unknown pipeline step {spec!r}")
            operand = reader.open(spec.get("operand"), "f", 1)
            if operand.shape != (n_features,):
                raise CompiledFormatError(
                    f"a pipeline step has {operand.shape[0]} values for {n_features} features")
            self.steps.append((op, operand))

    def apply(self, rows: np.ndarray) -> np.ndarray:
        if not self.steps:
            return rows
        out = np.array(rows, dtype=np.float64)  # a copy: the scalers work on their own
        for op, operand in self.steps:
            op(out, operand, out=out)
        return out
