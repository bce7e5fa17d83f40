"""Compiled model slots: a fitted scikit-learn model as flat numpy arrays.

At slot-write time (`inferd.model.artifact.compiled.compile.compile_into`, called while the slot is
still a staging directory, so the arrays get manifest checksums) a supported model is
written as `compiled/model.json` plus `compiled/arrays/*.npy`. Every worker opens the
arrays with `np.load(mmap_mode="r")`, so N workers share one copy through the page
cache, and predicts with numpy (linear models, the last step of a tree model) and the
native tree kernel (`kernel`, numba): no scikit-learn, scipy, pandas or MLflow import.

Modules: `format` (the files), `compile` (compile into a slot, verify, open),
`trees` (the node table every tree model shares, opened and bounds-checked), `kernel`
(the compiled traversal), `outputs` (raw scores to predict / predict_proba), `forests`
and `boosting` (scikit-learn's tree models into the node table), `categories`
(HistGradientBoosting's ordinal encoding), `xgboost_trees` and `lightgbm_trees` (the
libraries' boosters from their own JSON dumps) with `library_outputs` (their last
steps), `linear`, `pipeline`.

This package imports numpy and numba only (never scikit-learn, xgboost or lightgbm):
compiling reads a fitted estimator's attributes or its booster's dump, loading reads
`.npy` files.
"""
