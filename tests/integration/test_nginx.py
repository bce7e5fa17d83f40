"""deploy/nginx/inferd.conf for real: nginx (the Debian package, unprivileged, on
loopback) in front of two inferd instances, with the shipped config rendered with
loopback ports (tests/integration/nginx.py).

- `nginx -t` accepts it (checked by every start);
- a rolling reload (deploy/rolling-reload.sh) and a restart of one instance, under
  load through nginx, lose no request;
- `/admin/` is refused to a client outside the allowed networks: a client bound to
  127.0.0.2, which the config's `allow 127.0.0.1` does not cover, whatever
  X-Forwarded-For it claims;
- slow clients are absorbed by nginx: inferd never sees their requests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.fakes import ConstantModel, write_model
from tests.integration.nginx import Nginx, start_nginx
from tests.integration.servers import (
    IRIS_ROWS,
    InferdServer,
    LoadGenerator,
    start_inferd,
    stop_inferd,
)
from tests.integration.slow_clients import SlowClient
from tests.support import ROOT, clean_env

pytestmark = pytest.mark.integration

TOKEN = "nginx-secret"
SCRIPT = ROOT / "deploy" / "rolling-reload.sh"
OUTSIDE = "127.0.0.2"  # loopback, but not in the config's allow list


@dataclass
class Fleet:
    hosts: list[InferdServer]
    bases: list[Path]
    nginx: Nginx


def _start_host(base: Path, port: int | None = None) -> InferdServer:
    return start_inferd(base, {"MODEL_SOURCE": "local",
                               "MODEL_PATH": str(base / "models" / "model.joblib")},
                        admin_token=TOKEN, port=port, workers=1)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    hosts: list[InferdServer] = []
    bases = []
    nginx = None
    try:
        for name in ("a", "b"):
            base = tmp_path_factory.mktemp(f"behind-nginx-{name}")
            write_model(base / "models" / "model.joblib", ConstantModel(1))
            bases.append(base)
            hosts.append(_start_host(base))
        nginx = start_nginx([_port(h.url) for h in hosts])
        yield Fleet(hosts, bases, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        for host in hosts:
            stop_inferd(host)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _admin_through(nginx: Nginx, source: str, **headers: str) -> requests.Response:
    """POST /admin/reload through nginx from a client bound to `source`."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter()
    adapter.init_poolmanager(1, 1, source_address=(source, 0))
    session.mount("http://", adapter)
    with session:
        return session.post(f"{nginx.url}/admin/reload", timeout=60,
                            headers={"X-Admin-Token": TOKEN, **headers})


def _admin_requests(host: InferdServer) -> int:
    return sum(1 for r in host.log_records()
               if r.get("event") == "access" and r.get("path") == "/admin/reload")


def test_admin_is_refused_from_outside_the_allowed_networks(fleet: Fleet) -> None:
    seen = [_admin_requests(h) for h in fleet.hosts]
    for spoofed in ({}, {"X-Forwarded-For": "10.0.0.5"}, {"X-Real-IP": "127.0.0.1"}):
        refused = _admin_through(fleet.nginx, OUTSIDE, **spoofed)
        assert refused.status_code == 403, refused.text
        assert "nginx" in refused.text, "refused by nginx, not by inferd's token check"
    assert [_admin_requests(h) for h in fleet.hosts] == seen, "inferd never saw them"
    assert f"access forbidden by rule, client: {OUTSIDE}" in fleet.nginx.error_log()

    allowed = _admin_through(fleet.nginx, "127.0.0.1", **{"X-Forwarded-For": "10.9.9.9"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["status"] in ("noop", "reloaded")
    # The audit line names the address nginx saw, not the one the client claimed.
    callers = [r.get("forwarded_for") for h in fleet.hosts for r in h.log_records()
               if r.get("event") == "reload"]
    assert "127.0.0.1" in callers and "10.9.9.9" not in str(callers), callers


def test_slow_clients_are_absorbed_by_nginx(fleet: Fleet) -> None:
    """More slow clients than both instances have threads (2 x 1 worker x 4): through
    nginx, none of them reaches inferd, and predictions answer as usual."""
    slow = [SlowClient(fleet.nginx.port, phase, pace=0.25, max_seconds=15).start()
            for phase in ("headers", "body") * 10]
    try:
        time.sleep(1.0)
        for _ in range(20):
            started = time.monotonic()
            resp = requests.post(f"{fleet.nginx.url}/predict/", json={"features": IRIS_ROWS},
                                 timeout=10)
            assert resp.status_code == 200, resp.text
            assert time.monotonic() - started < 2.0, "a prediction waited behind slow clients"
        assert all(c.answers == [] for c in slow), "nginx is still reading each of them"
    finally:
        for client in slow:
            client.stop()
    for host in fleet.hosts:
        records = host.log_records()
        assert not [r for r in records if r.get("event") == "slow_client"]
        assert not [r for r in records if r.get("status") == 408]


@pytest.mark.slow
def test_rolling_reload_and_a_restart_under_load_lose_no_request(fleet: Fleet) -> None:
    a, b = fleet.hosts
    for base in fleet.bases:
        write_model(base / "models" / "model.joblib", ConstantModel(2))
    with LoadGenerator(fleet.nginx.url, threads=3, max_seconds=90) as load:
        load.wait_requests(20)
        rolled = subprocess.run(
            ["bash", str(SCRIPT), "--wait", "30", a.url, b.url], capture_output=True,
            text=True, timeout=200, cwd=ROOT,
            env=clean_env(ADMIN_API_TOKEN=TOKEN, INFERD_CMD=f"{sys.executable} -m inferd"))
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        load.wait_requests(20)

        # A restart of one instance: SIGTERM (gunicorn finishes what it has), down for a
        # few seconds, up again on the same port with its published slot.
        a.process.stop(strict=True)
        load.wait_requests(20)
        fleet.hosts[0] = a = _start_host(fleet.bases[0], port=_port(a.url))
        load.wait_requests(20)

    failed = [o for o in load.outcomes if o.status != 200]
    assert not failed, failed[:5]
    assert len(load.outcomes) >= 80
    versions = [o.version for o in load.outcomes]
    assert versions[-1] == versions[-20] != versions[0], "the roll moved every host"

