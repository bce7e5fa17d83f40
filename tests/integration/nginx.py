"""nginx in front of inferd for the integration tests, with the shipped config.

`deploy/nginx/inferd.conf` is an include for nginx's `http {}` block. `render` takes
it as shipped and substitutes only what a test host must differ in: the upstream
servers (two VM addresses become two loopback ports) and the listening port; it fails
if the file no longer has the lines it substitutes. The wrapper around it names what
nginx needs to run unprivileged: a prefix with its pid, logs and temporary files, on
loopback ports. As root (CI), nginx runs as `nobody` through `setpriv`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.servers import Process, spawn
from tests.support import ROOT, clean_env, free_port, wait_for

SHIPPED = ROOT / "deploy" / "nginx" / "inferd.conf"
NOBODY = 65534

WRAPPER = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/inferd.conf;
}}
"""


def nginx_binary() -> str:
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if path is None:
        pytest.fail("nginx is not installed (Debian: apt-get install nginx); .ci/run installs it")
    return path


def render(upstreams: list[int], listen: int) -> str:
    """The shipped config with its two upstream servers and its port replaced."""
    text = SHIPPED.read_text()
    servers = re.findall(r"^\s*server (10\.0\.0\.\d+:8000) ", text, flags=re.M)
    assert len(servers) == len(upstreams) == 2, servers
    for address, port in zip(servers, upstreams, strict=True):
        text = text.replace(f"server {address} ", f"server 127.0.0.1:{port} ", 1)
    text, listens = re.subn(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen};", text,
                            flags=re.M)
    assert listens == 1, "the shipped config no longer has `listen 80;`"
    return text


@dataclass
class Nginx:
    process: Process
    prefix: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.stop(strict=True)  # SIGTERM: nginx's fast shutdown, exit code 0
        shutil.rmtree(self.prefix, ignore_errors=True)


def _as_unprivileged(cmd: list[str], prefix: Path) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    for path in [prefix, *prefix.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run nginx unprivileged as root"
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


def start_nginx(upstreams: list[int]) -> Nginx:
    """`nginx -t` on the rendered config, then nginx in the foreground; return once it
    answers on its port."""
    binary = nginx_binary()
    # Not under pytest's tmp_path: as root that sits in a 0700 directory `nobody` cannot
    # enter.
    prefix = Path(tempfile.mkdtemp(prefix="inferd-nginx-"))
    port = free_port()
    (prefix / "inferd.conf").write_text(render(upstreams, port))
    (prefix / "nginx.conf").write_text(WRAPPER.format(prefix=prefix))
    base = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
            "-e", str(prefix / "error.log")]
    (prefix / "error.log").touch()
    checked = subprocess.run(_as_unprivileged([*base, "-t"], prefix), capture_output=True,
                             text=True, timeout=30, env=clean_env())
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr
    process = spawn("nginx", _as_unprivileged(base, prefix), clean_env(), prefix / "stdout.log")
    server = Nginx(process, prefix, port)

    def answers() -> bool:
        import requests

        try:
            requests.get(f"{server.url}/health/", timeout=2)
        except requests.RequestException:
            return False
        return True

    try:
        wait_for(answers, 30, f"nginx on port {port}", process, interval=0.1)
    except BaseException:
        server.stop()
        raise
    return server
