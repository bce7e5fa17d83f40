"""ADMIN_API_TOKEN_FILE: the token from a file (the unit's systemd credential)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.common.errors import ConfigError
from inferd.common.settings import load_settings


def test_token_is_read_from_the_file_without_its_newline(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("9f2c4e\n")
    settings = load_settings({"INFERD_STATE_DIR": str(tmp_path),
                              "ADMIN_API_TOKEN_FILE": str(token_file)})
    assert settings.admin_token == "9f2c4e"
    assert settings.admin_token_file == token_file


def test_credentials_directory_form_of_the_unit(tmp_path: Path) -> None:
    # systemd expands the unit's `%d/admin-token` to $CREDENTIALS_DIRECTORY/admin-token.
    credentials = tmp_path / "credentials" / "inferd.service"
    credentials.mkdir(parents=True)
    (credentials / "admin-token").write_text("from-a-credential")
    settings = load_settings({"INFERD_STATE_DIR": str(tmp_path),
                              "ADMIN_API_TOKEN_FILE": str(credentials / "admin-token")})
    assert settings.admin_token == "from-a-credential"


@pytest.mark.parametrize(("content", "why"), [
    (None, "expected a readable UTF-8 file"),
    ("  \n", "found it empty"),
    (b"\xff\xfe", "expected a readable UTF-8 file"),
])
def test_missing_empty_or_binary_file_stops_start_up_naming_it(
        tmp_path: Path, content: str | bytes | None, why: str) -> None:
    token_file = tmp_path / "admin-token"
    if isinstance(content, bytes):
        token_file.write_bytes(content)
    elif content is not None:
        token_file.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings({"INFERD_STATE_DIR": str(tmp_path),
                       "ADMIN_API_TOKEN_FILE": str(token_file)})
    assert f"ADMIN_API_TOKEN_FILE='{token_file}'" in str(caught.value)
    assert why in str(caught.value)


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("a")
    with pytest.raises(ConfigError, match="both set"):
        load_settings({"INFERD_STATE_DIR": str(tmp_path), "ADMIN_API_TOKEN": "b",
                       "ADMIN_API_TOKEN_FILE": str(token_file)})
