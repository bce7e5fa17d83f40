"""The docs and the deploy files say what the code does."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from inferd.common.settings import SETTINGS, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_is_generated_from_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    assert block.strip() == settings_table()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"pip install -e '\.\[test\]' && (python -m pytest)", readme)
    assert command, "README quick start lost its test command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command.group(1) in [line.strip() for line in ci]


def test_systemd_unit_runs_the_packaged_config_and_app() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / "inferd.service")
    exec_start = unit["Service"]["ExecStart"]
    assert "-c python:inferd.gunicorn_conf inferd.app:app" in exec_start
    assert unit["Service"]["StateDirectory"] == "inferd"
    text = (ROOT / "systemd" / "inferd.service").read_text()
    assert "Environment=INFERD_STATE_DIR=/var/lib/inferd" in text.splitlines()
    assert unit["Service"]["ExecReload"].endswith("-HUP $MAINPID")


def test_env_example_names_only_real_settings() -> None:
    known = {s.env for s in SETTINGS}
    example = (ROOT / "systemd" / "inferd.env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.M))
    assert named and named <= known


def test_env_example_names_every_setting() -> None:
    example = (ROOT / "systemd" / "inferd.env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.M))
    assert {s.env for s in SETTINGS} <= named


def test_install_guide_matches_the_units() -> None:
    readme = (ROOT / "README.md").read_text()
    service = (ROOT / "systemd" / "inferd.service").read_text()
    socket_unit = (ROOT / "systemd" / "inferd.socket").read_text()
    assert "systemctl enable --now inferd.socket inferd.service" in readme
    assert "journalctl -u inferd -o cat" in readme
    assert "ExecStart=/opt/inferd/venv/bin/gunicorn" in service
    assert "python3 -m venv /opt/inferd/venv" in readme
    assert "LoadCredential=admin-token:/etc/inferd/admin-token" in service
    assert "/etc/inferd/admin-token" in readme
    assert "ListenStream=127.0.0.1:8000" in socket_unit
    assert "useradd --system" in readme
