"""/health/ tells anyone what a load balancer and `inferd smoke` need; the model's path,
run id, leader pid and error texts only to a caller who holds the admin token
(inferd.usecases.health_view). Through the Falcon app, on a real state dir."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from tests.fakes import write_model
from tests.support import app_client

TOKEN = "health-token-1234567890"


@pytest.fixture
def client(make_settings: Callable[..., Settings], model_path: Path,
           forests: tuple[Any, Any]) -> testing.TestClient:
    write_model(model_path, forests[0])
    settings = make_settings(admin_token=TOKEN)
    client = app_client(settings, runner=open_reloader(settings))
    assert client.simulate_post("/admin/reload", headers={"X-Admin-Token": TOKEN}).json[
        "status"] == "reloaded"
    return client


def test_the_public_answer_names_no_path_run_or_error(client: testing.TestClient,
                                                      model_path: Path) -> None:
    for headers in ({}, {"X-Admin-Token": "wrong"}):
        resp = client.simulate_get("/health/", headers=headers)
        assert resp.status_code == 200
        body = resp.json
        assert body["status"] == "ok" and body["ready"] is True
        assert set(body["mlflow"]) == {"status", "server_version", "verified_at", "model_uri"}
        model = body["model"]
        assert {"version", "form", "generation", "n_features"} <= set(model)
        assert not {"uri", "run_id", "source", "fallback_reason", "format"} & set(model)
        assert str(model_path) not in resp.text
        assert "pid" not in resp.text


def test_the_admin_token_gets_the_whole_report(client: testing.TestClient,
                                               model_path: Path) -> None:
    resp = client.simulate_get("/health/", headers={"X-Admin-Token": TOKEN})
    assert resp.json["model"]["uri"] == f"file://{model_path}"
    assert resp.json["model"]["source"] == "local"


def test_a_not_ready_worker_keeps_its_error_text_private(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(admin_token=TOKEN)
    client = app_client(settings, runner=open_reloader(settings))
    public = client.simulate_get("/health/")
    assert public.status_code == 503 and public.json["ready"] is False
    assert "error" not in public.json["details"]
    assert str(settings.state_dir) not in json.dumps(public.json)
    full = client.simulate_get("/health/", headers={"X-Admin-Token": TOKEN})
    assert "no model is published yet" in full.json["details"]["error"]
