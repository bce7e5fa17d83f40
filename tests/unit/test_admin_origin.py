"""Admin requests a browser sends from another site are refused (inferd.web.origin),
through the Falcon app on a real state dir; clients that are no browser are not
affected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.web.origin import foreign_reason
from tests.fakes import write_model
from tests.support import app_client

TOKEN = "origin-token-0123456789"
HOST = "127.0.0.1:8000"


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], model_path: Path,
                forests: tuple[Any, Any]) -> Callable[..., testing.TestClient]:
    write_model(model_path, forests[0])

    def make(**overrides: Any) -> testing.TestClient:
        settings = make_settings(**overrides)
        return app_client(settings, runner=open_reloader(settings))

    return make


def post(client: testing.TestClient, action: str, **headers: str) -> testing.Result:
    return client.simulate_post(f"/admin/{action}", headers={"Host": HOST, **headers})


@pytest.mark.parametrize("action", ["reload", "rollback"])
@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:9999"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    # A page that rebound its own name to this server: same origin, but a host name.
    {"Origin": "http://rebound.example:8000", "Host": "rebound.example:8000"},
], ids=["other-site", "other-port", "null", "fetch-site", "dns-rebinding"])
def test_a_cross_site_browser_request_is_refused_without_a_token(
        make_client: Callable[..., testing.TestClient], action: str,
        headers: dict[str, str]) -> None:
    client = make_client()
    resp = post(client, action, **headers)
    assert resp.status_code == 403
    assert resp.json == {"detail": "Forbidden"}
    assert client.simulate_post("/predict/", json={"features": [[1, 2, 3, 4]]}
                                ).status_code == 503  # nothing was reloaded


def test_a_foreign_origin_is_refused_even_with_the_token(
        make_client: Callable[..., testing.TestClient]) -> None:
    client = make_client(admin_token=TOKEN)
    resp = post(client, "reload", Origin="http://evil.example", **{"X-Admin-Token": TOKEN})
    assert resp.status_code == 403


@pytest.mark.parametrize("headers", [
    {},  # curl, the CLI, a fleet script: no Origin
    {"Origin": f"http://{HOST}", "Sec-Fetch-Site": "same-origin"},  # inferd's own /docs
    {"Origin": "http://localhost:8000", "Host": "localhost:8000"},
])
def test_same_origin_and_non_browser_requests_pass(
        make_client: Callable[..., testing.TestClient], headers: dict[str, str]) -> None:
    resp = post(make_client(), "reload", **headers)
    assert resp.status_code == 200, resp.json
    assert resp.json["status"] == "reloaded"


def test_with_a_token_a_host_name_is_fine(make_client: Callable[..., testing.TestClient]
                                          ) -> None:
    client = make_client(admin_token=TOKEN)
    resp = post(client, "reload", Origin="https://inferd.internal", Host="inferd.internal",
                **{"X-Admin-Token": TOKEN})
    assert resp.status_code == 200, resp.json


def test_other_routes_are_not_guarded(make_client: Callable[..., testing.TestClient]) -> None:
    resp = make_client().simulate_get("/health/", headers={"Origin": "http://evil.example"})
    assert resp.status_code == 503  # not ready, but answered


@pytest.mark.parametrize(("origin", "host", "foreign"), [
    ("http://a.example", "a.example", False),
    ("http://a.example:80", "a.example", False),
    ("https://a.example", "a.example:443", False),
    ("https://a.example", "a.example:80", True),
    ("http://[::1]:8000", "[::1]:8000", False),
    ("http://a.example", None, True),
    ("http://a.example:notaport", "a.example", True),
])
def test_origin_comparison(origin: str, host: str | None, foreign: bool) -> None:
    assert (foreign_reason(origin, host, None, token_configured=True) is not None) is foreign
