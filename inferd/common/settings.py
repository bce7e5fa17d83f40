"""Configuration, declared once as data and read from the environment.

Each setting is declared once, as a field of `Settings` made by `_setting(...)`: its
environment variable, how to parse it, its default (as the environment would spell
it) and a one-line doc. From that one declaration come

- the `Settings` dataclass itself (the typed default is the parsed raw default);
- `SETTINGS`, one `Setting` row a field, derived with `dataclasses.fields`;
- `load_settings()`, which reads them all at start and raises one `ConfigError`
  naming the variable, the value and what is allowed, so a typo stops start-up with
  one clear line;
- `settings_table()`, the README's configuration table;
- `environment()` / `child_environment()`: a `Settings` rendered back into the
  variables that load it (`load_settings(environment(s)) == s`), which is how a
  reload child receives its parent's settings (`inferd.reloading.child`);
- `mlflow_environment()`: the variables MLflow itself reads from the environment
  (credentials, TLS, HTTP timeouts), set for MLflow in the process that uses it.

Secrets (the admin token, MLflow's token and password) are declared `secret`: left
out of `repr(settings)`, never logged, shown as "unset" in the table.

Every environment variable inferd reads is declared here, with these exceptions,
which are protocols rather than settings: systemd's NOTIFY_SOCKET (inferd.common.notify)
and LISTEN_FDS / LISTEN_PID (gunicorn's own), and gunicorn's GUNICORN_CMD_ARGS. The
master *exports* PROMETHEUS_MULTIPROC_DIR (declared here) to its workers, because
prometheus_client reads it itself when it is imported.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.common.errors import ConfigError
from inferd.common.selector import Selector

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("a non-empty string")
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(" or ".join(repr(a) for a in allowed))
        return value

    return parse


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("a positive integer") from None
    if value < 1:
        raise ValueError("a positive integer")
    return value


def _optional_positive_float(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("a positive number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("a positive number of seconds")
    return value


def _positive_float(raw: str) -> float:
    value = _optional_positive_float(raw)
    if value is None:
        raise ValueError("a positive number of seconds")
    return value


def _optional_version(raw: str) -> str | None:
    if not raw.strip():
        return None
    if not raw.strip().isascii() or not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError("a registered model version number such as 3")
    return raw.strip()


def _bind(raw: str) -> str:
    value = raw.strip()
    if value.startswith("unix:"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("HOST:PORT (for example 127.0.0.1:8000) or unix:/path")
    return value


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("true or false")


def _optional_flag(raw: str) -> bool | None:
    return _flag(raw) if raw.strip() else None


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a filesystem path")
    return Path(raw.strip()).expanduser()


def _optional_path(raw: str) -> Path | None:
    return _path(raw) if raw.strip() else None


def _optional_raw(raw: str) -> str | None:
    """A secret, taken exactly as given (MLflow reads the same variable unstripped)."""
    return raw or None


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("an integer, 0 or more") from None
    if value < 0:
        raise ValueError("an integer, 0 or more")
    return value


@dataclass(frozen=True)
class Setting:
    """One row of the declaration: how one environment variable becomes one field."""

    attr: str
    env: str
    parse: Callable[[str], Any]
    # The default as the environment would spell it ("" = unset); a callable for a
    # default that depends on the user ($HOME), computed when it is needed.
    default: str | Callable[[], str]
    doc: str
    shown_default: str = ""
    secret: bool = False  # never logged nor shown; out of repr(settings)
    child: bool = True  # handed to a reload child (the child needs no admin token)
    mlflow: bool = False  # MLflow also reads this variable from the environment

    def raw_default(self) -> str:
        return self.default() if callable(self.default) else self.default


def _setting(env: str, parse: Callable[[str], Any], default: str | Callable[[], str],
             doc: str, shown_default: str = "", *, secret: bool = False,
             child: bool = True, mlflow: bool = False) -> Any:
    """A `Settings` field declared by its environment variable; the attribute name is
    filled in from the field's name when `SETTINGS` is derived."""
    row = Setting("", env, parse, default, doc, shown_default, secret, child, mlflow)
    metadata = {"setting": row}
    if callable(default):
        return dataclasses.field(default_factory=lambda: parse(row.raw_default()),
                                 metadata=metadata, repr=not secret)
    return dataclasses.field(default=parse(default), metadata=metadata, repr=not secret)


def _default_state_dir() -> str:
    return str(Path("~/.local/state/inferd").expanduser())


@dataclass(frozen=True)
class Settings:
    """Every setting of one inferd process, typed. Built by `load_settings()` (from the
    environment) or directly (tests, tools); immutable."""

    admin_token: str | None = _setting(
        "ADMIN_API_TOKEN", _optional_text, "",
        "Token for the admin endpoints; unset = open (warned at start, shown in /health/).",
        "unset", secret=True, child=False)
    admin_token_file: Path | None = _setting(
        "ADMIN_API_TOKEN_FILE", _optional_path, "",
        "File holding the admin token, e.g. a systemd credential (the unit's default: "
        "`%d/admin-token`); use instead of ADMIN_API_TOKEN, which /proc exposes.", "unset",
        child=False)
    admin_open: bool = _setting(
        "INFERD_ADMIN_OPEN", _flag, "false",
        "Start without an admin token although other hosts can reach the listening "
        "sockets (the admin endpoints are then open to them); refused otherwise.")
    admin_token_header: str = _setting(
        "ADMIN_TOKEN_HEADER", _text, "X-Admin-Token",
        "Request header that carries the admin token.")
    model_source: str = _setting(
        "MODEL_SOURCE", _choice("mlflow", "local"), "mlflow",
        "Where reloads fetch the model from: `mlflow` (registry) or `local` (MODEL_PATH).")
    model_path: Path = _setting(
        "MODEL_PATH", _path, "/app/model/model/model.pkl",
        "Model file (joblib / pickle / skops) or MLflow model directory for `local`.")
    model_cache_dir: Path | None = _setting(
        "MODEL_CACHE_DIR", _optional_path, "",
        "Download cache for MLflow artifacts.", "`<state>/cache`")
    mlflow_tracking_uri: str | None = _setting(
        "MLFLOW_TRACKING_URI", _optional_text, "",
        "MLflow tracking / registry URI; any MLflow server URL works.",
        "`sqlite:///<state>/mlflow.db`")
    mlflow_tracking_token: str | None = _setting(
        "MLFLOW_TRACKING_TOKEN", _optional_raw, "",
        "Bearer token for an MLflow server (MLflow's own variable; never logged).", "unset",
        secret=True, mlflow=True)
    mlflow_tracking_username: str | None = _setting(
        "MLFLOW_TRACKING_USERNAME", _optional_text, "",
        "User for HTTP basic auth to an MLflow server (MLflow's own variable).", "unset",
        mlflow=True)
    mlflow_tracking_password: str | None = _setting(
        "MLFLOW_TRACKING_PASSWORD", _optional_raw, "",
        "Password for HTTP basic auth (MLflow's own variable; never logged).", "unset",
        secret=True, mlflow=True)
    mlflow_tracking_insecure_tls: bool = _setting(
        "MLFLOW_TRACKING_INSECURE_TLS", _flag, "false",
        "Skip TLS certificate checks against the MLflow server (MLflow's own variable).",
        mlflow=True)
    mlflow_tracking_server_cert_path: Path | None = _setting(
        "MLFLOW_TRACKING_SERVER_CERT_PATH", _optional_path, "",
        "CA bundle to verify the MLflow server's certificate with (MLflow's own variable).",
        "system CAs", mlflow=True)
    mlflow_tracking_client_cert_path: Path | None = _setting(
        "MLFLOW_TRACKING_CLIENT_CERT_PATH", _optional_path, "",
        "Client certificate (with its key) for an MLflow server that asks for mutual TLS "
        "(MLflow's own variable).", "unset", mlflow=True)
    mlflow_model_name: str = _setting(
        "MLFLOW_MODEL_NAME", _text, "iris-model",
        "Registered model name.")
    mlflow_model_stage: str = _setting(
        "MLFLOW_MODEL_STAGE", _text, "Production",
        "Stage to serve when no version or alias is set (stages are deprecated in MLflow).")
    mlflow_model_version: str | None = _setting(
        "MLFLOW_MODEL_VERSION", _optional_version, "",
        "Pins one version; wins over alias and stage.", "unset")
    mlflow_model_alias: str | None = _setting(
        "MLFLOW_MODEL_ALIAS", _optional_text, "",
        "Alias to serve, e.g. `champion`; wins over stage.", "unset")
    auto_refresh_seconds: float | None = _setting(
        "MODEL_AUTO_REFRESH_SECONDS", _optional_positive_float, "",
        "Registry poll interval for automatic reloads (one poller per service).",
        "unset (off)")
    reload_timeout: int = _setting(
        "INFERD_RELOAD_TIMEOUT", _positive_int, "90",
        "Hard bound on one reload (fetch, validation, publish); the reload's child "
        "process is killed after it.")
    # MLflow's own defaults (120 s, 7 retries with backoff) would hold a reload for
    # many minutes against a dead server; these bound each registry call of a reload.
    mlflow_http_request_timeout: int = _setting(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", _positive_int, "15",
        "Seconds one registry request of a reload may take (MLflow's own variable).",
        mlflow=True)
    mlflow_http_request_max_retries: int = _setting(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", _non_negative_int, "2",
        "Retries of a failed registry request during a reload (MLflow's own variable).",
        mlflow=True)
    mlflow_http_request_backoff_factor: int = _setting(
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", _non_negative_int, "1",
        "Backoff factor between those retries (MLflow's own variable).", mlflow=True)
    registry_probe_seconds: float = _setting(
        "INFERD_REGISTRY_PROBE_SECONDS", _positive_float, "15",
        "How often each worker checks the registry for /health/ (in the background).")
    state_dir: Path = _setting(
        "INFERD_STATE_DIR", _path, _default_state_dir,
        "Slots, generation file, reload lock, metrics dir.",
        "`~/.local/state/inferd` (systemd: `/var/lib/inferd`)")
    prometheus_multiproc_dir: Path | None = _setting(
        "PROMETHEUS_MULTIPROC_DIR", _optional_path, "",
        "Directory of the workers' metric files, emptied at start (the systemd unit: "
        "`/run/inferd/metrics`).", "`<state>/metrics`")
    bind: str = _setting(
        "INFERD_BIND", _bind, "127.0.0.1:8000", "Address gunicorn listens on.")
    workers: int = _setting(
        "INFERD_WORKERS", _positive_int, "2", "Number of worker processes.")
    threads: int = _setting(
        "INFERD_THREADS", _positive_int, "4",
        "Threads per worker (gthread), so a reload's fetch and validation never block "
        "a worker's other requests.")
    worker_timeout: int = _setting(
        "INFERD_WORKER_TIMEOUT", _positive_int, "120",
        "Seconds before gunicorn restarts a silent worker.")
    read_timeout: float = _setting(
        "INFERD_READ_TIMEOUT", _positive_float, "10",
        "Seconds a client has to send a request's headers, and again its body; a slower "
        "client is cut off (408 for a body), so slow clients cannot hold every thread.")
    max_body_bytes: int = _setting(
        "INFERD_MAX_BODY_BYTES", _positive_int, "1048576",
        "Largest request body accepted (/predict/, /invocations); larger answers 413.")
    max_rows: int = _setting(
        "INFERD_MAX_ROWS", _positive_int, "10000",
        "Most rows one /predict/ or /invocations request may carry.")
    slot_retention: int = _setting(
        "INFERD_SLOT_RETENTION", _positive_int, "3",
        "Published slots kept on disk (at least 2: the current and the previous).")
    allow_pickle: bool | None = _setting(
        "INFERD_ALLOW_PICKLE", _optional_flag, "",
        "Load pickle / joblib / cloudpickle models (they run code when loaded): unset = "
        "from the local MODEL_PATH only; `true` = from the registry too; `false` = never.",
        "unset (local only)")
    log_level: str = _setting(
        "INFERD_LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info",
        "Log level of the JSON logs.")
    access_log: bool = _setting(
        "INFERD_ACCESS_LOG", _flag, "true",
        "One JSON access line a request (gunicorn's access log, with correlation id "
        "and latency); `false` keeps only errors and events.")
    test_fault_injection_file: Path | None = _setting(
        "INFERD_TEST_FAULT_INJECTION_FILE", _optional_path, "",
        "TEST ONLY, never in production: a reloading process kills itself at the step "
        "named in this file (tests/integration/test_fault_injection.py).", "unset")

    @property
    def cache_dir(self) -> Path:
        return self.model_cache_dir or self.state_dir / "cache"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Where the embedded default registry keeps artifacts (only used by `demo`)."""
        return self.state_dir / "mlartifacts"

    @property
    def selector(self) -> Selector:
        """Which registry label picks the version: version, then alias, then stage."""
        if self.mlflow_model_version:
            return Selector("version", self.mlflow_model_version)
        if self.mlflow_model_alias:
            return Selector("alias", self.mlflow_model_alias)
        return Selector("stage", self.mlflow_model_stage)

    @property
    def requested_model_uri(self) -> str:
        """What a reload asks for, in MLflow's URI form (for logs; no secrets in it)."""
        if self.model_source == "local":
            return str(self.model_path)
        return self.selector.model_uri(self.mlflow_model_name)


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata["setting"], attr=f.name) for f in dataclasses.fields(Settings)
)
_BY_ATTR = {s.attr: s for s in SETTINGS}


def env_name(attr: str) -> str:
    """The environment variable of the setting held in `Settings.<attr>`."""
    return _BY_ATTR[attr].env


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one.

    Called once per process at start: by gunicorn's config in the master, by each
    worker's app, by the CLI, and by a reload child (on the environment its parent
    rendered with `child_environment`)."""
    values = _parse_all(os.environ if environ is None else environ)
    if values["slot_retention"] < 2:
        raise ConfigError(
            f"INFERD_SLOT_RETENTION='{values['slot_retention']}' is not valid: expected at "
            "least 2 (the current slot and the previous one, for rollback)"
        )
    if values["admin_token_file"] is not None:
        if values["admin_token"] is not None:
            raise ConfigError("ADMIN_API_TOKEN and ADMIN_API_TOKEN_FILE are both set: "
                              "expected one of them (the file is the safer place)")
        values["admin_token"] = read_token_file(values["admin_token_file"])
    return Settings(**values)


def _parse_all(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None:
            raw = setting.raw_default()
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            shown = "<secret>" if setting.secret else repr(raw)
            raise ConfigError(f"{setting.env}={shown} is not valid: expected {exc}") from None
    return values


def read_token_file(path: Path, named: str = "ADMIN_API_TOKEN_FILE") -> str:
    """The admin token from a file (a systemd credential, say), whitespace stripped;
    `named`: what the file was given as, for the error."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{named}='{path}' is not valid: expected a readable UTF-8 file "
            f"holding the token ({exc.__class__.__name__}: {exc})"
        ) from None
    if not token:
        raise ConfigError(f"{named}='{path}' is not valid: expected a file "
                          "holding the token, found it empty")
    return token


def _render(value: Any) -> str | None:
    """A parsed value back in the form its parser reads; None for unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def environment(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables that load it again:
    `load_settings(environment(s)) == s`. Unset settings are left out. Holds secrets:
    hand it to a process, never to a log."""
    rendered: dict[str, str] = {}
    for setting in SETTINGS:
        # A token read from ADMIN_API_TOKEN_FILE is rendered as the file it came from
        # (both variables set is a configuration error).
        if setting.attr == "admin_token" and settings.admin_token_file is not None:
            continue
        raw = _render(getattr(settings, setting.attr))
        if raw is not None:
            rendered[setting.env] = raw
    return rendered


def child_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a reload child (`inferd.reloading.child`): `inherited`
    (the parent's os.environ: PATH, HOME, MLflow's other variables...) without any
    declared variable, plus `settings` rendered, less what a child must not hold (the
    admin token). So the child loads exactly its parent's settings, even ones built in
    code, and MLflow in the child finds its own variables (token, HTTP timeouts)."""
    declared = {s.env for s in SETTINGS}
    passed = {s.env for s in SETTINGS if s.child}
    env = {key: value for key, value in inherited.items() if key not in declared}
    env.update({key: value for key, value in environment(settings).items() if key in passed})
    return env


def mlflow_environment(settings: Settings) -> dict[str, str | None]:
    """The variables MLflow reads from the environment by itself, as `settings` says
    (None: unset). The MLflow source sets them in the process that imports MLflow."""
    return {s.env: _render(getattr(settings, s.attr)) for s in SETTINGS if s.mlflow}


def settings_table() -> str:
    """The README's configuration table, rendered from SETTINGS."""
    rows = ["| variable | default | notes |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.shown_default or (f"`{s.default}`" if s.default else "unset")
        rows.append(f"| `{s.env}` | {default} | {s.doc} |")
    return "\n".join(rows)
