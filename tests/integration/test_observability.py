"""Metrics, logs and the API description of a real 2-worker server (MODEL_SOURCE=local).

One server for the module; each test counts from a scrape it takes itself, so the
tests do not depend on their order.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes import ExplodingModel, iris_forest, write_model
from tests.integration.servers import (
    HTTP_TIMEOUT,
    IRIS_ROWS,
    InferdServer,
    module_server,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "observability-secret"
CLOSE = {"Connection": "close"}


server = module_server("observability", admin_token=TOKEN)


def sample_names(samples: dict[str, float]) -> set[str]:
    return {key.split("{", 1)[0] for key in samples}


PREDICT_OK = 'ml_request_count_total{method="POST",path="/predict",status="200"}'


def test_one_scrape_sums_the_requests_of_every_worker(server: InferdServer) -> None:
    before = server.scrape().get(PREDICT_OK, 0.0)
    n = 40
    marker = "sum-check"
    for i in range(n):
        assert server.predict(headers={"X-Correlation-ID": f"{marker}-{i}"}).status_code == 200
    served_by = {r["pid"] for r in server.log_records()
                 if r.get("event") == "access" and str(r.get("correlation_id")).startswith(marker)}
    assert served_by == server.worker_pids(), "the predictions did not reach both workers"
    assert server.scrape()[PREDICT_OK] >= before + n


def test_a_killed_worker_leaves_a_scrape_that_parses_and_keeps_its_counts(
        server: InferdServer) -> None:
    for _ in range(6):
        assert server.predict().status_code == 200
    before = server.scrape()[PREDICT_OK]
    victim = sorted(server.worker_pids())[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
             60, "gunicorn to replace the killed worker", server.process)
    after = server.scrape()  # parses, answers
    # Counters are never lowered by a worker's death (its files stay in the directory).
    assert after[PREDICT_OK] >= before
    server.wait_workers_ready()
    after = server.scrape()
    assert after["inferd_generation{}"] == after["inferd_generation_oldest{}"] == \
        server.current_generation()


def test_unknown_paths_and_methods_share_one_label_value(server: InferdServer) -> None:
    for i in range(5):
        requests.get(f"{server.url}/scanner/probe-{i}", headers=CLOSE, timeout=HTTP_TIMEOUT)
    requests.request("PROPFIND", f"{server.url}/health/", headers=CLOSE, timeout=HTTP_TIMEOUT)
    samples = server.scrape()
    paths = {re.search(r'path="([^"]*)"', k).group(1)  # type: ignore[union-attr]
             for k in samples if k.startswith("ml_request_count_total")}
    assert not any("scanner" in p for p in paths)
    assert 'ml_request_count_total{method="GET",path="other",status="404"}' in samples
    assert not any("PROPFIND" in k for k in samples)


def test_generation_and_reload_metrics_follow_a_reload(server: InferdServer) -> None:
    assert server.model_path is not None
    before = server.scrape()
    write_model(server.model_path, iris_forest(n_estimators=2, seed=len(before)))
    assert server.admin("reload").json()["status"] == "reloaded"
    server.wait_workers_ready()
    after = server.scrape()
    key = 'inferd_reloads_total{action="reload",result="reloaded"}'
    assert after[key] == before.get(key, 0) + 1
    assert after["inferd_generation{}"] == after["inferd_generation_oldest{}"] == \
        server.current_generation()
    assert after["inferd_model_load_seconds_count{}"] > before["inferd_model_load_seconds_count{}"]


def readme_sample_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- metrics-list:start -->")[1].split("<!-- metrics-list:end -->")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", block, flags=re.MULTILINE))


def test_the_readme_lists_every_exposed_sample_name(server: InferdServer) -> None:
    # Make every family show its samples: a failed and a forbidden reload, a rollback.
    assert server.model_path is not None
    assert server.admin("reload", token="wrong").status_code == 403
    write_model(server.model_path, ExplodingModel())
    assert server.admin("reload").status_code == 500
    write_model(server.model_path, iris_forest(n_estimators=2, seed=99))
    assert server.admin("reload").status_code == 200
    assert server.admin("rollback").status_code == 200
    assert server.predict().status_code == 200
    assert sample_names(server.scrape()) == readme_sample_names()


def test_the_dashboard_queries_use_real_sample_names(server: InferdServer) -> None:
    dashboard = json.loads((ROOT / "dashboards" / "inferd.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs
    exposed = sample_names(server.scrape()) | readme_sample_names()
    for expr in exprs:
        used = set(re.findall(r"\b((?:ml|inferd)_[a-z_]+)", expr))
        assert used, expr
        assert used <= exposed, f"{expr}: {used - exposed} is not exposed"


# -- logs ---------------------------------------------------------------------------------


def test_every_log_line_is_json_with_the_callers_correlation_id(server: InferdServer) -> None:
    resp = server.predict(headers={"X-Correlation-ID": "cid-from-client-7"})
    assert resp.headers["X-Correlation-ID"] == "cid-from-client-7"
    other = server.health()
    generated = other.headers["X-Correlation-ID"]
    assert len(generated) >= 16
    by_request_id = requests.get(f"{server.url}/health/", timeout=HTTP_TIMEOUT,
                                 headers={"X-Request-ID": "req-id-3", **CLOSE})
    assert by_request_id.headers["X-Correlation-ID"] == "req-id-3"

    def access_lines() -> dict[str, dict[str, Any]] | None:
        lines = {r.get("correlation_id"): r for r in server.log_records()
                 if r.get("event") == "access"}
        wanted = ("cid-from-client-7", generated, "req-id-3")
        return lines if all(cid in lines for cid in wanted) else None

    lines = wait_for(access_lines, 10, "the access lines", server.process)
    line = lines["cid-from-client-7"]
    assert line["logger"] == "gunicorn.access"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict/", 200)
    assert line["model_version"] == resp.json()["model_version"]
    assert line["seconds"] > 0
    for field in ("timestamp", "level", "message", "correlation_id"):
        assert field in line
    text = server.process.log_text()
    not_json = [raw for raw in text.splitlines() if raw.strip() and not _is_json_object(raw)]
    assert not not_json, not_json[:5]


def _is_json_object(raw: str) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def test_every_reload_attempt_is_in_the_audit_trail(server: InferdServer) -> None:
    assert server.model_path is not None
    write_model(server.model_path, iris_forest(n_estimators=2, seed=7))
    ok = server.admin("reload")
    assert ok.json()["status"] == "reloaded"
    noop = server.admin("reload")
    assert noop.json()["status"] == "noop"
    assert server.admin("reload", token="not-the-token").status_code == 403
    write_model(server.model_path, ExplodingModel())
    failed = server.admin("reload")
    assert failed.status_code == 500

    def audit() -> dict[str, dict[str, Any]] | None:
        cids = {"applied": ok, "noop": noop, "failed": failed}
        by_cid = {r["correlation_id"]: r for r in server.log_records()
                  if r.get("event") == "reload"}
        found = {k: by_cid.get(v.headers["X-Correlation-ID"]) for k, v in cids.items()}
        return found if all(found.values()) else None  # type: ignore[return-value]

    lines = wait_for(audit, 10, "the reload audit lines", server.process)
    applied = lines["applied"]
    assert applied["message"] == "Manual model reload applied"
    assert applied["result"] == "reloaded"
    assert applied["version"] == ok.json()["version"]
    assert applied["model_uri"].endswith("model.joblib")
    assert applied["remote_addr"] == "127.0.0.1"
    assert lines["noop"]["result"] == "noop"
    assert lines["failed"]["result"] == "failed"
    assert "smoke prediction" in lines["failed"]["error"] or lines["failed"]["error"]
    assert lines["failed"]["model_uri"].endswith("model.joblib")
    forbidden = [r for r in server.log_records()
                 if r.get("event") == "reload" and r.get("result") == "forbidden"]
    assert forbidden and forbidden[-1]["remote_addr"] == "127.0.0.1"
    assert TOKEN not in server.process.log_text()
    assert "not-the-token" not in server.process.log_text()
    write_model(server.model_path, iris_forest(n_estimators=3))  # leave a good model


# -- the API description ------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(server: InferdServer) -> dict[str, Any]:
    resp = requests.get(f"{server.url}/openapi.json", headers=CLOSE, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200
    document: dict[str, Any] = resp.json()
    assert document["openapi"].startswith("3.1")
    return document


def check_against(document: dict[str, Any], path: str, method: str,
                  resp: requests.Response) -> None:
    """`resp` is a response the document declares for (path, method), body and headers."""
    operation = document["paths"][path][method]
    status = str(resp.status_code)
    assert status in operation["responses"], f"{method.upper()} {path} answered {status}"
    declared = operation["responses"][status]
    for header in declared.get("headers", {}):
        assert header in resp.headers, f"{path} {status}: header {header} missing"
    media = resp.headers["Content-Type"].split(";")[0]
    assert media in declared["content"], f"{path} {status}: {media} not declared"
    if media != "application/json":
        return
    pointer = "/".join(("#/paths", path.replace("/", "~1"), method, "responses", status,
                        "content", "application~1json", "schema"))
    registry = Registry().with_resource(
        "urn:inferd-openapi", Resource.from_contents(document, DRAFT202012))
    validator = Draft202012Validator({"$ref": "urn:inferd-openapi" + pointer},
                                     registry=registry)
    errors = [e.message for e in validator.iter_errors(resp.json())]
    assert not errors, f"{method.upper()} {path} {status}: {errors}"


def test_live_answers_match_the_openapi_document(server: InferdServer,
                                                  openapi: dict[str, Any]) -> None:
    assert server.model_path is not None
    url = server.url
    post = lambda path, **kw: requests.post(url + path, headers={**CLOSE, **kw.pop("headers", {})},  # noqa: E731
                                            timeout=120, **kw)
    cases: list[tuple[str, str, requests.Response]] = [
        ("/predict/", "post", post("/predict/", json={"features": IRIS_ROWS})),
        ("/predict", "post", post("/predict", json={"features": IRIS_ROWS})),
        ("/predict/", "post", post("/predict/", data=b"{not json")),
        ("/predict/", "post", post("/predict/", json={"features": [[1.0]]})),
        ("/predict/", "post", post("/predict/", data=b"x" * (2 << 20))),
        ("/health/", "get", server.health()),
        ("/metrics", "get", requests.get(url + "/metrics", headers=CLOSE, timeout=30)),
        ("/openapi.json", "get", requests.get(url + "/openapi.json", headers=CLOSE, timeout=30)),
        ("/docs", "get", requests.get(url + "/docs", headers=CLOSE, timeout=30)),
        ("/redoc", "get", requests.get(url + "/redoc", headers=CLOSE, timeout=30)),
        ("/admin/reload", "post", server.admin("reload", token=None)),
    ]
    write_model(server.model_path, iris_forest(n_estimators=2, seed=1234))
    cases.append(("/admin/reload", "post", server.admin("reload")))
    cases.append(("/admin/reload", "post", server.admin("reload")))  # noop
    cases.append(("/admin/rollback", "post", server.admin("rollback")))
    write_model(server.model_path, ExplodingModel())
    cases.append(("/admin/reload", "post", server.admin("reload")))
    write_model(server.model_path, iris_forest(n_estimators=3))
    statuses = set()
    for path, method, resp in cases:
        check_against(openapi, path, method, resp)
        statuses.add((path, resp.status_code))
    assert {("/predict/", 400), ("/predict/", 413), ("/admin/reload", 403),
            ("/admin/reload", 500), ("/admin/rollback", 200)} <= statuses


def test_the_document_describes_every_route_the_server_has(openapi: dict[str, Any],
                                                           tmp_path: Path) -> None:
    from inferd.app import create_app
    from inferd.common.settings import Settings
    from inferd.serving.service import WorkerService

    # A service that is never started has no background thread.
    app = create_app(WorkerService.open(Settings(state_dir=tmp_path)))
    templates = {route.uri_template for route in app._router._roots}  # noqa: SLF001
    templates |= {child.uri_template for route in app._router._roots
                  for child in _descendants(route)}
    served = {t for t in templates if t and "{" not in t}
    documented = {p.rstrip("/") or "/" for p in openapi["paths"]}
    assert served <= documented, served - documented


def _descendants(node: Any) -> Iterator[Any]:
    for child in node.children:
        yield child
        yield from _descendants(child)


# -- offline docs -------------------------------------------------------------------------


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_inferd_itself(server: InferdServer, page: str) -> None:
    resp = requests.get(server.url + page, headers=CLOSE, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    parser = _References()
    parser.feed(resp.text)
    inline_urls = re.findall(r"""["'](/[^"']+|https?://[^"']+)["']""", resp.text)
    urls = set(parser.urls) | set(inline_urls)
    assert any(u.endswith(".js") for u in urls)
    assert "/openapi.json" in urls
    origin = urlparse(server.url).netloc
    for url in urls:
        absolute = urljoin(server.url + page, url)
        assert urlparse(absolute).netloc == origin, f"{page} references {url} off the machine"
        asset = requests.get(absolute, headers=CLOSE, timeout=HTTP_TIMEOUT)
        assert asset.status_code == 200, f"{page} references {url}: {asset.status_code}"
        assert asset.content
    assert "validator.swagger.io" not in resp.text
