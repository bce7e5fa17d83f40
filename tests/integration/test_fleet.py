"""A fleet of two inferd hosts on loopback: `inferd smoke` as the post-deploy gate,
and deploy/rolling-reload.sh rolling a new model across them, stopping at the first
host that fails. MODEL_SOURCE=local, one MODEL_PATH per host, so a test can hand one
host a broken "new version" and the other a good one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fakes import ConstantModel, ExplodingModel, write_model
from tests.integration.servers import InferdServer, start_inferd, stop_inferd
from tests.support import ROOT, clean_env, free_port

pytestmark = pytest.mark.integration

TOKEN = "fleet-secret"
SCRIPT = ROOT / "deploy" / "rolling-reload.sh"
INFERD_CMD = f"{sys.executable} -m inferd"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[InferdServer]]:
    started: list[InferdServer] = []
    try:
        for name in ("a", "b"):
            base = tmp_path_factory.mktemp(f"host-{name}")
            model = write_model(base / "models" / "model.joblib", ConstantModel(1))
            started.append(start_inferd(base, {"MODEL_SOURCE": "local",
                                               "MODEL_PATH": str(model)},
                                        admin_token=TOKEN))
        yield started
    finally:
        for server in started:
            stop_inferd(server)


def deploy_everywhere(hosts: list[InferdServer], model: object) -> str:
    """Every host serves `model` (same file, so the same version); return the version."""
    first = hosts[0].model_path
    assert first is not None
    write_model(first, model)
    for host in hosts:
        assert host.model_path is not None
        if host.model_path != first:
            shutil.copyfile(first, host.model_path)
        resp = host.admin("reload")
        assert resp.status_code == 200 and resp.json()["status"] in ("reloaded", "noop")
    versions = {host.health().json()["model"]["version"] for host in hosts}
    assert len(versions) == 1
    return versions.pop()


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=clean_env(ADMIN_API_TOKEN=TOKEN, INFERD_CMD=INFERD_CMD, **env))


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "inferd", "smoke", *args])


def test_smoke_passes_on_a_ready_host_and_names_each_failure(
        hosts: list[InferdServer]) -> None:
    version = deploy_everywhere(hosts, ConstantModel(2))
    url = hosts[0].url

    ok = smoke("--url", url, "--expect-version", version)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"url": url, "ok": True, "failed": None, "detail": "ok",
                                     "version": version,
                                     "passed": ["ready", "prediction", "version"]}

    wrong = smoke("--url", url, "--expect-version", "not-" + version)
    assert wrong.returncode == 6, wrong.stderr
    assert f"expected version not-{version}" in wrong.stderr

    bad_row = smoke("--url", url, "--features", "[[1, 2]]")  # the model takes 4 features
    assert bad_row.returncode == 5, bad_row.stderr
    assert "/predict/ answered 400" in bad_row.stderr

    nobody = smoke("--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 3, nobody.stderr


@pytest.mark.slow
def test_rolling_reload_stops_at_a_broken_host_and_leaves_the_next_untouched(
        hosts: list[InferdServer]) -> None:
    a, b = hosts
    old = deploy_everywhere(hosts, ConstantModel(3))
    generations = (a.current_generation(), b.current_generation())
    assert a.model_path is not None and b.model_path is not None
    write_model(a.model_path, ExplodingModel())  # loads, then fails validation
    write_model(b.model_path, ConstantModel(4))  # good: a reload of b would change it

    rolled = run(["bash", str(SCRIPT), "--wait", "10", a.url, b.url])

    assert rolled.returncode == 1, rolled.stdout + rolled.stderr
    assert f"STOPPED at {a.url}: reload failed" in rolled.stderr
    assert "1 host(s) after it not touched" in rolled.stderr
    assert b.url not in rolled.stderr.split("STOPPED")[0]  # never even started on b
    for host, generation in zip(hosts, generations, strict=True):
        assert host.current_generation() == generation
        assert set(host.versions(10)) == {old}
    assert a.predict().json()["predictions"] == [3, 3, 3]
    assert b.predict().json()["predictions"] == [3, 3, 3]


@pytest.mark.slow
def test_rolling_reload_moves_every_host_to_one_new_version(
        hosts: list[InferdServer]) -> None:
    deploy_everywhere(hosts, ConstantModel(5))
    a, b = hosts
    assert a.model_path is not None and b.model_path is not None
    write_model(a.model_path, ConstantModel(6))
    shutil.copyfile(a.model_path, b.model_path)

    rolled = run(["bash", str(SCRIPT), a.url, b.url])

    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    new = {host.health().json()["model"]["version"] for host in hosts}
    assert len(new) == 1
    assert f"all 2 host(s) serve version {new.pop()}" in rolled.stderr
    for host in hosts:
        assert host.predict().json()["predictions"] == [6, 6, 6]


@pytest.mark.slow
def test_rolling_reload_stops_when_a_later_host_serves_another_version(
        hosts: list[InferdServer]) -> None:
    a, b = hosts
    old = deploy_everywhere(hosts, ConstantModel(7))
    assert a.model_path is not None and b.model_path is not None
    write_model(a.model_path, ConstantModel(8))
    write_model(b.model_path, ConstantModel(9))  # the registry moved mid-roll, say

    rolled = run(["bash", str(SCRIPT), a.url, b.url])

    assert rolled.returncode == 6, rolled.stdout + rolled.stderr
    assert f"STOPPED at {b.url}: smoke gate failed (exit 6)" in rolled.stderr
    assert b.health().json()["model"]["version"] != old  # b reloaded; the gate caught it
