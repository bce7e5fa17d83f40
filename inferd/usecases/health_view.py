"""What `/health/` tells anyone, and what only an admin.

A load balancer, a fleet script and `inferd smoke` need to know whether a worker is
ready and what it serves; they do not need the model file's path, the run id, the
auto-refresh leader's pid, or the registry's error text, which tell an attacker
where things are and how they fail. So the public answer keeps the seed's shape with
only these fields (an allow-list: a field added to the report later stays private
until it is listed here), and the whole report goes to a caller who may use the admin
endpoints (`inferd.usecases.admin.Admin.may_administer`: the admin token, or anyone when
no token is configured, since the admin endpoints are then open too).
"""

from __future__ import annotations

from typing import Any

PUBLIC_MODEL = ("name", "version", "stage", "alias", "generation", "form", "n_features",
                "published_at", "loaded_at")
PUBLIC_MLFLOW = ("status", "server_version", "verified_at", "model_uri")


def public_view(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a `/health/` report anyone may read."""
    model = body.get("model")
    details = body.get("details") or {}
    mlflow = body.get("mlflow") or {}
    return {
        "status": body.get("status"),
        "ready": body.get("ready"),
        "details": {"metrics": details.get("metrics", {})},
        "mlflow": {key: mlflow.get(key) for key in PUBLIC_MLFLOW},
        "model": {key: model.get(key) for key in PUBLIC_MODEL} if model else None,
        "admin": body.get("admin"),
    }
