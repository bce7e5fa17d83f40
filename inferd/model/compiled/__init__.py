"""Compiled model slots: a fitted scikit-learn model as flat numpy arrays.

At slot-write time (`inferd.model.compiled.compile.compile_into`, called while the slot is
still a staging directory, so the arrays get manifest checksums) a supported model is
written as `compiled/model.json` plus `compiled/arrays/*.npy`. Every worker opens the
arrays with `np.load(mmap_mode="r")`, so N workers share one copy through the page
cache, and predicts with vectorised numpy: no scikit-learn, pandas or MLflow import.

This package imports numpy only (never scikit-learn): compiling reads a fitted
estimator's public attributes, loading reads `.npy` files.
"""
