"""Use cases: what a worker does for a caller, in domain values and domain errors.

Every protocol (inferd's `/predict/` today; MLflow's `/invocations` and the Open
Inference Protocol later) is a codec in `inferd.web.codecs` around the same calls:
`Predict` for predictions, `HealthCheck` for readiness, `Admin` for reload and
rollback. Nothing here sees HTTP; statuses live in `inferd.web.errors`.
"""
