"""Settings: the documented defaults, one clear error per bad value, selector order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from inferd.common.errors import ConfigError
from inferd.common.selector import Selector
from inferd.common.settings import (
    SETTINGS,
    Settings,
    child_environment,
    environment,
    load_settings,
    mlflow_environment,
    settings_table,
)


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
        ("MLFLOW_TRACKING_INSECURE_TLS", "sometimes", "true or false"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "0", "a positive integer"),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "-1", "an integer, 0 or more"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1.5", "an integer, 0 or more"),
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


def _every_setting_changed(tmp_path: Path) -> Settings:
    """A Settings with no field at its default (the admin token comes from a file)."""
    token_file = tmp_path / "admin-token"
    token_file.write_text("from-the-file\n")
    return Settings(
        admin_token="from-the-file", admin_token_file=token_file, admin_token_header="X-Key",
        admin_open=True,
        model_source="local", model_path=tmp_path / "m.joblib",
        model_cache_dir=tmp_path / "dl", mlflow_tracking_uri="https://mlflow.example",
        mlflow_tracking_token=" t0ken", mlflow_tracking_username="alice",
        mlflow_tracking_password="p w ", mlflow_tracking_insecure_tls=True,
        mlflow_tracking_server_cert_path=tmp_path / "ca.pem",
        mlflow_tracking_client_cert_path=tmp_path / "client.pem", mlflow_model_name="fraud",
        mlflow_model_stage="Staging", mlflow_model_version="7", mlflow_model_alias="champion",
        auto_refresh_seconds=2.5, reload_timeout=30, mlflow_http_request_timeout=5,
        mlflow_http_request_max_retries=0, mlflow_http_request_backoff_factor=3,
        registry_probe_seconds=0.25, state_dir=tmp_path / "state",
        prometheus_multiproc_dir=tmp_path / "metrics", bind="unix:/run/inferd.sock",
        workers=3, threads=1, worker_timeout=7, read_timeout=1.5, max_body_bytes=10, max_rows=2,
        slot_retention=5, allow_pickle=False,
        log_level="debug", access_log=False, test_fault_injection_file=tmp_path / "step",
    )


def test_one_declaration_gives_each_field_its_variable_and_parsed_default() -> None:
    for setting in SETTINGS:
        field = Settings.__dataclass_fields__[setting.attr]
        assert field.metadata["setting"].env == setting.env
        made = Settings()  # a default_factory (state_dir) runs here
        default = getattr(made, setting.attr) if field.default is dataclasses.MISSING \
            else field.default
        assert default == setting.parse(setting.raw_default()), setting.env


def test_rendered_environment_loads_the_same_settings(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    changed = _every_setting_changed(tmp_path)
    assert all(getattr(changed, s.attr) != getattr(Settings(), s.attr) for s in SETTINGS)
    for settings in (Settings(), changed, Settings(admin_token="plain")):
        assert load_settings(environment(settings)) == settings
    rendered = environment(changed)
    assert "ADMIN_API_TOKEN" not in rendered  # the file is rendered, not its content
    assert rendered["MLFLOW_TRACKING_INSECURE_TLS"] == "true"


def test_the_child_environment_carries_the_parents_settings_and_nothing_stale(
        tmp_path: Path) -> None:
    parent = dataclasses.replace(_every_setting_changed(tmp_path), mlflow_model_alias=None)
    inherited = {"PATH": "/usr/bin", "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
                 "MLFLOW_MODEL_ALIAS": "stale", "ADMIN_API_TOKEN": "shell-token",
                 "INFERD_WORKERS": "9"}
    env = child_environment(parent, inherited)

    assert env["PATH"] == "/usr/bin" and env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "MLFLOW_MODEL_ALIAS" not in env  # unset in the parent: not the shell's value
    assert "ADMIN_API_TOKEN" not in env and "ADMIN_API_TOKEN_FILE" not in env
    # What MLflow itself reads in the child is there, as the parent's settings say.
    assert {k: env.get(k) for k in mlflow_environment(parent)} == mlflow_environment(parent)
    assert env["MLFLOW_TRACKING_TOKEN"] == " t0ken" and env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    child = load_settings(env)
    assert child == dataclasses.replace(parent, admin_token=None, admin_token_file=None)


def test_secrets_stay_out_of_repr_and_errors(tmp_path: Path) -> None:
    settings = Settings(admin_token="adm1n", mlflow_tracking_token="t0ken",
                        mlflow_tracking_password="passw0rd")
    shown = repr(settings)
    assert "adm1n" not in shown and "t0ken" not in shown and "passw0rd" not in shown
    assert {s.env for s in SETTINGS if s.secret} == {
        "ADMIN_API_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD"}
    assert "| `MLFLOW_TRACKING_TOKEN` | unset |" in settings_table()


def test_mlflow_defaults_bound_a_reload() -> None:
    assert mlflow_environment(Settings()) == {
        "MLFLOW_TRACKING_TOKEN": None, "MLFLOW_TRACKING_USERNAME": None,
        "MLFLOW_TRACKING_PASSWORD": None, "MLFLOW_TRACKING_INSECURE_TLS": "false",
        "MLFLOW_TRACKING_SERVER_CERT_PATH": None, "MLFLOW_TRACKING_CLIENT_CERT_PATH": None,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
