"""Categorical features as HistGradientBoosting* sees them: ordinal codes.

scikit-learn fits such a model behind a ColumnTransformer (`_preprocessor`, built in
`BaseHistGradientBoosting._preprocess_X`): an OrdinalEncoder turns each categorical
column's value into its index among the categories seen in training (sorted; an
unknown value or NaN becomes NaN), the categorical columns come first, then the
numeric ones unchanged. The trees split on those codes. Arrays (spec `categories`):

    cat_columns      intp (c,)        input columns that are categorical, in order
    num_columns      intp (n - c,)    the other input columns, in order
    cat_values       f8   (total,)    each categorical column's sorted known values
    cat_offsets      intp (c + 1,)    column j's values are cat_values[o[j]:o[j+1]]
    cat_feature_row  intp (n,)        per encoded column: its row in known_bits, or -1
    known_bits       u4   (c, 8)      codes seen in training (256 bits a feature)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.model.compiled.format import ArrayReader, ArrayWriter, CompiledFormatError, Unsupported

MAX_CATEGORIES = 256  # a code must fit the kernel's 256-bit bitsets


def compile_encoder(estimator: Any, writer: ArrayWriter) -> dict[str, Any] | None:
    """The encoder of a fitted HistGradientBoosting* model, or None without one."""
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return None
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    encoder = preprocessor.named_transformers_["encoder"]
    values, offsets = [], [0]
    for cats in encoder.categories_:
        cats = np.asarray(cats)
        if cats.dtype.kind not in "iuf":
            raise Unsupported(f"categories of dtype {cats.dtype} (strings need the encoder)")
        cats = cats.astype(np.float64)
        known = cats[~np.isnan(cats)]  # NaN is encoded as missing, not as a code
        if len(known) > MAX_CATEGORIES or not bool((np.diff(known) > 0).all()):
            raise Unsupported("more than 256 categories, or categories out of order")
        values.append(known)
        offsets.append(offsets[-1] + len(known))
    known_bits, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    remapped = np.asarray(estimator._is_categorical_remapped, dtype=bool)
    row = np.where(remapped, np.asarray(f_idx_map, dtype=np.intp), -1)
    return {"arrays": {
        "cat_columns": writer.add("enc_cat_columns", np.flatnonzero(mask).astype(np.intp)),
        "num_columns": writer.add("enc_num_columns", np.flatnonzero(~mask).astype(np.intp)),
        "cat_values": writer.add("enc_cat_values", np.concatenate(values)),
        "cat_offsets": writer.add("enc_cat_offsets", np.asarray(offsets, dtype=np.intp)),
        "cat_feature_row": writer.add("enc_cat_feature_row", row.astype(np.intp)),
        "known_bits": writer.add("enc_known_bits", np.asarray(known_bits, dtype=np.uint32)),
    }}


class CategoryEncoder:
    """The opened encoder; `transform` returns the matrix the trees split on."""

    def __init__(self, arrays: dict[str, Any], reader: ArrayReader, n_features: int) -> None:
        self.cat_columns = reader.open(arrays.get("cat_columns"), "i", 1)
        self.num_columns = reader.open(arrays.get("num_columns"), "i", 1)
        self.values = reader.open(arrays.get("cat_values"), "f", 1)
        self.offsets = reader.open(arrays.get("cat_offsets"), "i", 1)
        self.feature_row = reader.open(arrays.get("cat_feature_row"), "i", 1)
        self.known_bits = reader.open(arrays.get("known_bits"), "u", 2)
        columns = np.concatenate([self.cat_columns, self.num_columns])
        c = len(self.cat_columns)
        offsets = np.asarray(self.offsets)
        if (not np.array_equal(np.sort(columns), np.arange(n_features))
                or offsets.shape != (c + 1,) or offsets[0] != 0
                or offsets[-1] != len(self.values) or not bool((np.diff(offsets) >= 0).all())
                or int(np.diff(offsets).max(initial=0)) > MAX_CATEGORIES
                or self.feature_row.shape != (n_features,)
                or self.known_bits.shape != (c, 8)
                or not bool((self.feature_row < c).all())):
            raise CompiledFormatError("categorical encoder arrays are inconsistent")
        self.columns = columns

    @classmethod
    def open(cls, spec: Any, reader: ArrayReader, n_features: int) -> CategoryEncoder | None:
        if spec is None:
            return None
        if not isinstance(spec, dict) or not isinstance(spec.get("arrays"), dict):
            raise CompiledFormatError("bad categorical encoder spec")
        return cls(spec["arrays"], reader, n_features)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        out = np.asarray(rows, dtype=np.float64)[:, self.columns]  # a copy, reordered
        for j in range(len(self.cat_columns)):
            known = self.values[self.offsets[j]:self.offsets[j + 1]]
            column = out[:, j]
            code = np.searchsorted(known, column)
            found = code < len(known)
            found[found] = known[code[found]] == column[found]
            out[:, j] = np.where(found, code, np.nan)
        return out
