"""The `inferd` command's offline subcommands (slots, rollback) and its config errors."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.commands.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main
from inferd.common.settings import SETTINGS, Settings
from inferd.reloading.reload import open_reloader
from inferd.reloading.sources.local import content_hash
from tests.fakes import ConstantModel, write_model


@pytest.fixture(autouse=True)
def environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The CLI reads os.environ: point it at this test's state dir and model file."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("INFERD_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("MODEL_SOURCE", "local")
    monkeypatch.setenv("MODEL_PATH", str(settings.model_path))
    # main() installs a JSON handler on the `inferd` logger; undo it for later tests.
    logger = logging.getLogger("inferd")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate = handlers, propagate
    logger.setLevel(level)


def publish(settings: Settings, value: int) -> str:
    write_model(settings.model_path, ConstantModel(value))
    assert open_reloader(settings).run().status == "reloaded"
    return content_hash(settings.model_path)[:12]


def table_rows(out: str) -> dict[int, str]:
    """Generation -> its line, from `inferd slots` output."""
    rows = {}
    for line in out.splitlines()[1:]:
        match = re.match(r"^[ *]{2}\s*(\d+)\s", line)
        assert match, f"unexpected line {line!r}"
        rows[int(match.group(1))] = line
    return rows


def test_slots_on_an_empty_state_dir(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["slots"]) == EXIT_OK
    assert capsys.readouterr().out == f"no slots in {settings.state_dir / 'slots'}\n"


def test_slots_lists_every_slot_and_marks_current(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    version_1 = publish(settings, 1)
    version_2 = publish(settings, 2)

    assert main(["slots"]) == EXIT_OK

    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["GEN", "VERSION", "SOURCE", "PUBLISHED", "(UTC)",
                                           "URI"]
    rows = table_rows(out)
    assert sorted(rows) == [1, 2]
    assert rows[2].startswith("*") and version_2 in rows[2]
    assert not rows[1].startswith("*") and version_1 in rows[1]
    assert "local" in rows[1] and f"file://{settings.model_path}" in rows[1]


def test_slots_shows_a_broken_slot_instead_of_failing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, 1)
    publish(settings, 2)
    (settings.state_dir / "slots" / "1" / "manifest.json").write_text("{")

    assert main(["slots"]) == EXIT_OK

    rows = table_rows(capsys.readouterr().out)
    assert "broken" in rows[1] and "not valid JSON" in rows[1]
    assert rows[2].startswith("*")


def test_rollback_makes_the_previous_model_current(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    version_1 = publish(settings, 1)
    publish(settings, 2)

    assert main(["rollback"]) == EXIT_OK

    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "reloaded"
    assert body["version"] == version_1
    assert main(["slots"]) == EXIT_OK
    rows = table_rows(capsys.readouterr().out)
    current = max(rows)
    assert rows[current].startswith("*") and version_1 in rows[current]


def test_rollback_with_nothing_to_go_back_to_fails(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, 1)

    assert main(["rollback"]) == EXIT_FAILED

    err = capsys.readouterr().err
    assert err.startswith("inferd: no earlier slot with a different model is kept")


def test_direct_reload_publishes(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    write_model(settings.model_path, ConstantModel(1))

    assert main(["reload", "--direct"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["status"] == "reloaded"
    assert main(["reload", "--direct"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["status"] == "noop"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("INFERD_WORKERS", "zero"), ("MODEL_SOURCE", "s3"), ("INFERD_BIND", "nowhere")],
)
@pytest.mark.parametrize("command", [["slots"], ["rollback"], ["reload", "--direct"]])
def test_bad_environment_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    variable: str, value: str, command: list[str],
) -> None:
    monkeypatch.setenv(variable, value)

    assert main(command) == EXIT_CONFIG

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"inferd: {variable}={value!r} is not valid: expected")


def test_unusable_state_dir_fails_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("INFERD_STATE_DIR", str(not_a_dir))

    assert main(["rollback"]) == EXIT_FAILED

    err = capsys.readouterr().err
    assert err.startswith(f"inferd: state directory {not_a_dir} is not a directory")
    assert "INFERD_STATE_DIR" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == EXIT_CONFIG
    assert "invalid choice" in capsys.readouterr().err


def test_a_state_dir_other_users_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("INFERD_STATE_DIR", str(shared))

    assert main(["rollback"]) == EXIT_FAILED

    err = capsys.readouterr().err
    assert "writable by other users (mode 0777)" in err
    assert f"chmod go-w {shared}" in err


def test_a_new_state_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "new-state"
    monkeypatch.setenv("INFERD_STATE_DIR", str(state))

    assert main(["rollback"]) == EXIT_FAILED  # nothing to roll back to, but it is created

    assert state.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("argv", [["--help"], ["reload", "--help"], ["rollback", "--help"],
                                  ["demo", "publish", "--help"]])
def test_help_is_written_for_the_operator(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    shown = capsys.readouterr().out
    assert stopped.value.code == 0
    assert "exit codes:" in shown and "2  a setting or an argument is not valid" in shown
    # No maintainer's notes, module docstrings or code names in what an operator reads.
    for internal in ("live here", "in one place", "inferd.", "`"):
        assert internal not in shown, internal


def test_top_level_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    for command in ("serve", "demo", "reload", "status", "smoke", "slots", "rollback"):
        assert f"    {command} " in shown, command


def test_reload_refuses_a_token_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reload", "--url", "http://127.0.0.1:9", "--token", "s3cret"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--token was removed" in err and "process list" in err and "s3cret" not in err


def test_reload_reads_the_token_from_a_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferd.commands import cli

    sent: list[dict[str, str]] = []

    def request(method: str, url: str, headers: dict[str, str] | None = None,
                timeout: float = 0) -> tuple[int, Any]:
        sent.append(dict(headers or {}))
        return 200, {"status": "noop"}

    monkeypatch.setattr(cli, "_request", request)
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    assert main(["reload", "--url", "http://x", "--token-file", str(token_file)]) == EXIT_OK
    monkeypatch.setenv("ADMIN_API_TOKEN", "from-the-env")
    assert main(["reload", "--url", "http://x"]) == EXIT_OK
    assert main(["status", "--url", "http://x"]) == EXIT_OK
    assert [h.get("X-Admin-Token") for h in sent] == ["from-the-file", "from-the-env",
                                                      "from-the-env"]
