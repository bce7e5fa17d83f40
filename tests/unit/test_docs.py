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


# -- README and docs/: links, and the files and tests they name ------------------------------

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A path in the repository as the docs write it: in a code span of its own, or in a
# drawing (a code block) of docs/. README's code blocks are excluded: its install steps
# name paths inside a checkout called `inferd`.
_PATH = re.compile(r"(?<![\w/.~-])((?:inferd|tests|benchmarks|deploy|systemd|dashboards|docs)"
                   r"/[\w./{},*-]*[\w/}*])(?:::(\w+))?")
# Named by docs/architecture.md, landing with the service / use-case layer of issue 11;
# remove each entry once its module exists.
def _prose(text: str) -> str:
    """The text without code blocks and code spans, where links live."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    anchors = set()
    for line in _FENCE.sub("", path.read_text()).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _expand(path: str) -> list[str]:
    found = re.search(r"\{([^}]*)\}", path)
    if not found:
        return [path]
    return [p for choice in found.group(1).split(",")
            for p in _expand(path[:found.start()] + choice + path[found.end():])]


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = []
    for doc in DOC_FILES:
        for target in _LINK.findall(_prose(doc.read_text())):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if ROOT not in [resolved, *resolved.parents]:
                broken.append(f"{doc.name}: {target} leaves the repository")
            elif not resolved.exists():
                broken.append(f"{doc.name}: {target} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{doc.name}: {target} has no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_readme_and_docs_name_nothing_outside_the_repository() -> None:
    for doc in DOC_FILES:
        text = doc.read_text()
        # Spelled in pieces, so this file does not itself name what it forbids.
        for outside in ("../" + "shared", "DESIGN" + ".md", "design " + "document",
                        "shared " + "folder"):
            assert outside not in text, f"{doc.name} points at {outside!r}"


def test_files_modules_and_tests_named_in_the_docs_exist() -> None:
    missing = []
    for doc in DOC_FILES:
        text = doc.read_text()
        spans = [s.strip("`") for s in _CODE_SPAN.findall(_FENCE.sub("", text))]
        drawings = _FENCE.findall(text) if doc.parent.name == "docs" else []
        for chunk in [*spans, *drawings]:
            for named, test in _PATH.findall(chunk):
                for path in _expand(named):
                    files = list(ROOT.glob(path)) if "*" in path else [ROOT / path]
                    if not files or not all(f.exists() for f in files):
                        missing.append(f"{doc.name}: {path}")
                    elif test and not re.search(rf"^\s*def {test}\(", (ROOT / path).read_text(),
                                                flags=re.M):
                        missing.append(f"{doc.name}: {path}::{test}")
    assert not missing, "\n".join(missing)
