"""Configuration, declared once as data and read from the environment.

Every setting is one `Setting` row: its environment variable, how to parse it, its
default and a one-line doc. `load_settings()` reads them all at start and raises one
`ConfigError` whose message names the variable, the value and what is allowed, so a
typo stops start-up with one clear line. `settings_table()` renders the same rows
as the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferd.errors import ConfigError

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


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a filesystem path")
    return Path(raw.strip()).expanduser()


def _optional_path(raw: str) -> Path | None:
    return _path(raw) if raw.strip() else None


@dataclass(frozen=True)
class Setting:
    attr: str
    env: str
    parse: Callable[[str], Any]
    default: str
    doc: str
    shown_default: str = ""


def _default_state_dir() -> str:
    return str(Path("~/.local/state/inferd").expanduser())


SETTINGS: tuple[Setting, ...] = (
    Setting("admin_token", "ADMIN_API_TOKEN", _optional_text, "",
            "Token for the admin endpoints; unset = open (warned at start, shown in /health/).",
            "unset"),
    Setting("admin_token_file", "ADMIN_API_TOKEN_FILE", _optional_path, "",
            "File holding the admin token, e.g. a systemd credential (the unit's default: "
            "`%d/admin-token`); use instead of ADMIN_API_TOKEN, which /proc exposes.", "unset"),
    Setting("admin_token_header", "ADMIN_TOKEN_HEADER", _text, "X-Admin-Token",
            "Request header that carries the admin token."),
    Setting("model_source", "MODEL_SOURCE", _choice("mlflow", "local"), "mlflow",
            "Where reloads fetch the model from: `mlflow` (registry) or `local` (MODEL_PATH)."),
    Setting("model_path", "MODEL_PATH", _path, "/app/model/model/model.pkl",
            "Model file (joblib / pickle / skops) or MLflow model directory for `local`."),
    Setting("model_cache_dir", "MODEL_CACHE_DIR", _optional_path, "",
            "Download cache for MLflow artifacts.", "`<state>/cache`"),
    Setting("mlflow_tracking_uri", "MLFLOW_TRACKING_URI", _optional_text, "",
            "MLflow tracking / registry URI; any MLflow server URL works.",
            "`sqlite:///<state>/mlflow.db`"),
    Setting("mlflow_model_name", "MLFLOW_MODEL_NAME", _text, "iris-model",
            "Registered model name."),
    Setting("mlflow_model_stage", "MLFLOW_MODEL_STAGE", _text, "Production",
            "Stage to serve when no version or alias is set (stages are deprecated in MLflow)."),
    Setting("mlflow_model_version", "MLFLOW_MODEL_VERSION", _optional_version, "",
            "Pins one version; wins over alias and stage.", "unset"),
    Setting("mlflow_model_alias", "MLFLOW_MODEL_ALIAS", _optional_text, "",
            "Alias to serve, e.g. `champion`; wins over stage.", "unset"),
    Setting("auto_refresh_seconds", "MODEL_AUTO_REFRESH_SECONDS", _optional_positive_float, "",
            "Registry poll interval for automatic reloads (one poller per service).",
            "unset (off)"),
    Setting("reload_timeout", "INFERD_RELOAD_TIMEOUT", _positive_int, "90",
            "Hard bound on one reload (fetch, validation, publish); the reload's child "
            "process is killed after it."),
    Setting("registry_probe_seconds", "INFERD_REGISTRY_PROBE_SECONDS", _positive_float, "15",
            "How often each worker checks the registry for /health/ (in the background)."),
    Setting("state_dir", "INFERD_STATE_DIR", _path, "",
            "Slots, generation file, reload lock, metrics dir.",
            "`~/.local/state/inferd` (systemd: `/var/lib/inferd`)"),
    Setting("bind", "INFERD_BIND", _bind, "127.0.0.1:8000", "Address gunicorn listens on."),
    Setting("workers", "INFERD_WORKERS", _positive_int, "2", "Number of worker processes."),
    Setting("threads", "INFERD_THREADS", _positive_int, "4",
            "Threads per worker (gthread), so a reload's fetch and validation never block "
            "a worker's other requests."),
    Setting("worker_timeout", "INFERD_WORKER_TIMEOUT", _positive_int, "120",
            "Seconds before gunicorn restarts a silent worker."),
    Setting("max_body_bytes", "INFERD_MAX_BODY_BYTES", _positive_int, "1048576",
            "Largest /predict/ body accepted; larger answers 413."),
    Setting("max_rows", "INFERD_MAX_ROWS", _positive_int, "10000",
            "Most rows one /predict/ request may carry."),
    Setting("slot_retention", "INFERD_SLOT_RETENTION", _positive_int, "3",
            "Published slots kept on disk (at least 2: the current and the previous)."),
    Setting("allow_pickle", "INFERD_ALLOW_PICKLE", _flag, "true",
            "Load pickle / joblib / cloudpickle models from the configured source."),
    Setting("log_level", "INFERD_LOG_LEVEL", _choice("debug", "info", "warning", "error"),
            "info", "Log level of the JSON logs."),
    Setting("access_log", "INFERD_ACCESS_LOG", _flag, "true",
            "One JSON access line a request (gunicorn's access log, with correlation id "
            "and latency); `false` keeps only errors and events."),
)


@dataclass(frozen=True)
class Settings:
    admin_token: str | None = None
    admin_token_file: Path | None = None
    admin_token_header: str = "X-Admin-Token"
    model_source: str = "mlflow"
    model_path: Path = Path("/app/model/model/model.pkl")
    model_cache_dir: Path | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_model_name: str = "iris-model"
    mlflow_model_stage: str = "Production"
    mlflow_model_version: str | None = None
    mlflow_model_alias: str | None = None
    auto_refresh_seconds: float | None = None
    reload_timeout: int = 90
    registry_probe_seconds: float = 15.0
    state_dir: Path = field(default_factory=lambda: Path(_default_state_dir()))
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 4
    worker_timeout: int = 120
    max_body_bytes: int = 1_048_576
    max_rows: int = 10_000
    slot_retention: int = 3
    allow_pickle: bool = True
    log_level: str = "info"
    access_log: bool = True

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
    def selector(self) -> tuple[str, str]:
        """Which registry label picks the version: version, then alias, then stage."""
        if self.mlflow_model_version:
            return "version", self.mlflow_model_version
        if self.mlflow_model_alias:
            return "alias", self.mlflow_model_alias
        return "stage", self.mlflow_model_stage

    @property
    def bind_is_loopback(self) -> bool:
        """Only this host can connect (a unix socket is guarded by its file mode)."""
        if self.bind.startswith("unix:"):
            return True
        host = self.bind.rpartition(":")[0].strip("[]")
        return host in ("localhost", "::1") or host.startswith("127.")

    @property
    def requested_model_uri(self) -> str:
        """What a reload asks for, in MLflow's URI form (for logs; no secrets in it)."""
        if self.model_source == "local":
            return str(self.model_path)
        kind, value = self.selector
        separator = "@" if kind == "alias" else "/"
        return f"models:/{self.mlflow_model_name}{separator}{value}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None:
            raw = setting.default or (_default_state_dir() if setting.attr == "state_dir" else "")
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{setting.env}={raw!r} is not valid: expected {exc}"
            ) from None
    if values["slot_retention"] < 2:
        raise ConfigError(
            f"INFERD_SLOT_RETENTION='{values['slot_retention']}' is not valid: expected at "
            "least 2 (the current slot and the previous one, for rollback)"
        )
    if values["admin_token_file"] is not None:
        if values["admin_token"] is not None:
            raise ConfigError("ADMIN_API_TOKEN and ADMIN_API_TOKEN_FILE are both set: "
                              "expected one of them (the file is the safer place)")
        values["admin_token"] = _read_token_file(values["admin_token_file"])
    return Settings(**values)


def _read_token_file(path: Path) -> str:
    """The admin token from a file (a systemd credential, say), whitespace stripped."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"ADMIN_API_TOKEN_FILE='{path}' is not valid: expected a readable UTF-8 file "
            f"holding the token ({exc.__class__.__name__}: {exc})"
        ) from None
    if not token:
        raise ConfigError(f"ADMIN_API_TOKEN_FILE='{path}' is not valid: expected a file "
                          "holding the token, found it empty")
    return token


def settings_table() -> str:
    """The README's configuration table, rendered from SETTINGS."""
    rows = ["| variable | default | notes |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.shown_default or (f"`{s.default}`" if s.default else "unset")
        rows.append(f"| `{s.env}` | {default} | {s.doc} |")
    return "\n".join(rows)
