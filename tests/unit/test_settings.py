"""Settings: the defaults DESIGN promises, one clear error per bad value, selector order."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.common.errors import ConfigError
from inferd.common.selector import Selector
from inferd.common.settings import SETTINGS, Settings, load_settings, settings_table


def test_defaults_match_the_design_table(tmp_path: Path) -> None:
    settings = load_settings({"INFERD_STATE_DIR": str(tmp_path)})

    assert settings.admin_token is None
    assert settings.admin_token_header == "X-Admin-Token"
    assert settings.model_source == "mlflow"
    assert settings.model_path == Path("/app/model/model/model.pkl")
    assert settings.mlflow_model_name == "iris-model"
    assert settings.mlflow_model_stage == "Production"
    assert settings.mlflow_model_version is None
    assert settings.mlflow_model_alias is None
    assert settings.auto_refresh_seconds is None
    assert settings.bind == "127.0.0.1:8000"
    assert settings.workers == 2
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.selector == Selector("stage", "Production")


def test_state_dir_defaults_to_the_users_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings({})
    assert settings.state_dir == tmp_path / ".local" / "state" / "inferd"
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/.local/state/inferd/mlflow.db"


def test_environment_defaults_equal_the_dataclass_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two declarations of one default drift apart; this keeps them equal.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({}) == Settings()


def test_explicit_values_are_parsed(tmp_path: Path) -> None:
    settings = load_settings({
        "INFERD_STATE_DIR": str(tmp_path),
        "ADMIN_API_TOKEN": " s3cret ",
        "ADMIN_TOKEN_HEADER": "X-Ops-Key",
        "MODEL_SOURCE": "LOCAL",
        "MODEL_PATH": str(tmp_path / "m.pkl"),
        "MODEL_CACHE_DIR": str(tmp_path / "dl"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "MODEL_AUTO_REFRESH_SECONDS": "2.5",
        "INFERD_BIND": "unix:/run/inferd.sock",
        "INFERD_WORKERS": "8",
        "INFERD_ALLOW_PICKLE": "off",
        "INFERD_LOG_LEVEL": "DEBUG",
    })
    assert settings.admin_token == "s3cret"
    assert settings.admin_token_header == "X-Ops-Key"
    assert settings.model_source == "local"
    assert settings.model_path == tmp_path / "m.pkl"
    assert settings.cache_dir == tmp_path / "dl"
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.auto_refresh_seconds == 2.5
    assert settings.bind == "unix:/run/inferd.sock"
    assert settings.workers == 8
    assert settings.allow_pickle is False
    assert settings.log_level == "debug"


def test_empty_optional_values_mean_unset(tmp_path: Path) -> None:
    settings = load_settings({
        "INFERD_STATE_DIR": str(tmp_path),
        "ADMIN_API_TOKEN": "",
        "MLFLOW_MODEL_VERSION": " ",
        "MLFLOW_MODEL_ALIAS": "",
        "MODEL_AUTO_REFRESH_SECONDS": "",
        "MODEL_CACHE_DIR": "",
    })
    assert settings.admin_token is None
    assert settings.mlflow_model_version is None
    assert settings.mlflow_model_alias is None
    assert settings.auto_refresh_seconds is None
    assert settings.cache_dir == tmp_path / "cache"


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("MODEL_SOURCE", "s3", "'mlflow' or 'local'"),
        ("ADMIN_TOKEN_HEADER", "  ", "a non-empty string"),
        ("MLFLOW_MODEL_NAME", "", "a non-empty string"),
        ("MLFLOW_MODEL_STAGE", " ", "a non-empty string"),
        ("MLFLOW_MODEL_VERSION", "latest", "a registered model version number"),
        ("MLFLOW_MODEL_VERSION", "0", "a registered model version number"),
        ("MLFLOW_MODEL_VERSION", "-3", "a registered model version number"),
        ("MODEL_AUTO_REFRESH_SECONDS", "soon", "a positive number of seconds"),
        ("MODEL_AUTO_REFRESH_SECONDS", "0", "a positive number of seconds"),
        ("MODEL_AUTO_REFRESH_SECONDS", "-5", "a positive number of seconds"),
        ("MODEL_AUTO_REFRESH_SECONDS", "nan", "a positive number of seconds"),
        ("MODEL_AUTO_REFRESH_SECONDS", "inf", "a positive number of seconds"),
        ("MODEL_PATH", "", "a filesystem path"),
        ("INFERD_STATE_DIR", " ", "a filesystem path"),
        ("INFERD_BIND", "8000", "HOST:PORT"),
        ("INFERD_BIND", "localhost:http", "HOST:PORT"),
        ("INFERD_BIND", "localhost:0", "HOST:PORT"),
        ("INFERD_BIND", "localhost:65536", "HOST:PORT"),
        ("INFERD_BIND", ":8000", "HOST:PORT"),
        ("INFERD_WORKERS", "two", "a positive integer"),
        ("INFERD_WORKERS", "0", "a positive integer"),
        ("INFERD_WORKERS", "1.5", "a positive integer"),
        ("INFERD_THREADS", "-1", "a positive integer"),
        ("INFERD_WORKER_TIMEOUT", "soon", "a positive integer"),
        ("INFERD_MAX_BODY_BYTES", "1MB", "a positive integer"),
        ("INFERD_MAX_ROWS", "0", "a positive integer"),
        ("INFERD_SLOT_RETENTION", "1", "at least 2"),
        ("INFERD_SLOT_RETENTION", "many", "a positive integer"),
        ("INFERD_ALLOW_PICKLE", "maybe", "true or false"),
        ("INFERD_LOG_LEVEL", "verbose", "'debug' or 'info' or 'warning' or 'error'"),
    ],
)
def test_bad_value_names_variable_value_and_what_is_allowed(
    tmp_path: Path, variable: str, value: str, allowed: str
) -> None:
    environ = {"INFERD_STATE_DIR": str(tmp_path), variable: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert message.startswith(f"{variable}=")
    assert f"={value!r} is not valid" in message or f"={value} is not valid" in message
    assert allowed in message
    assert "\n" not in message


def test_every_setting_has_a_unique_variable_and_a_doc() -> None:
    envs = [s.env for s in SETTINGS]
    assert len(envs) == len(set(envs))
    assert all(s.doc for s in SETTINGS)
    assert {s.attr for s in SETTINGS} == set(Settings.__dataclass_fields__)


def test_settings_table_lists_every_variable_with_its_default() -> None:
    table = settings_table()
    for setting in SETTINGS:
        assert f"| `{setting.env}` |" in table
    assert "| `ADMIN_TOKEN_HEADER` | `X-Admin-Token` |" in table
    assert "| `INFERD_WORKERS` | `2` |" in table
    assert "| `MLFLOW_TRACKING_URI` | `sqlite:///<state>/mlflow.db` |" in table


@pytest.mark.parametrize(
    ("version", "alias", "stage", "expected"),
    [
        ("3", "champion", "Staging", Selector("version", "3")),
        ("3", None, "Staging", Selector("version", "3")),
        (None, "champion", "Staging", Selector("alias", "champion")),
        (None, None, "Staging", Selector("stage", "Staging")),
    ],
)
def test_selector_precedence_is_version_then_alias_then_stage(
    version: str | None, alias: str | None, stage: str, expected: Selector
) -> None:
    settings = Settings(
        mlflow_model_version=version, mlflow_model_alias=alias, mlflow_model_stage=stage
    )
    assert settings.selector == expected


def test_selector_precedence_from_the_environment(tmp_path: Path) -> None:
    both = load_settings({
        "INFERD_STATE_DIR": str(tmp_path),
        "MLFLOW_MODEL_VERSION": "4",
        "MLFLOW_MODEL_ALIAS": "champion",
    })
    assert both.selector == Selector("version", "4")
    alias = load_settings({"INFERD_STATE_DIR": str(tmp_path), "MLFLOW_MODEL_ALIAS": "champion"})
    assert alias.selector == Selector("alias", "champion")
