"""Structured logs: one JSON object a line on stderr, each with a correlation id.

The correlation id of the request being served lives in a context variable, set by
the web middleware; records logged outside a request carry `null`. Any `extra=`
fields of a record become fields of its JSON object. gunicorn's access records
arrive with its "atoms" (a dict of the request's facts) as their arguments; they
become the fields of an `access` event, the correlation id taken from the response
header the middleware set, since the context variable is gone by then.

gunicorn's own `Logger.access` builds every atom it knows for every request (all
request and response headers, the whole WSGI environ, each key lower-cased twice) before
the logger even checks its level: more CPU than inferd's own middleware. `AccessLine`
replaces it in each worker (`post_worker_init`) with the few atoms the JSON line reads,
built only when the line is enabled.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import orjson

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one access line, from gunicorn's atoms (see glogging.atoms)."""
    status = str(atoms.get("s", "-"))
    return {
        "message": f"{atoms.get('m')} {atoms.get('U')} {status}",
        "correlation_id": atoms.get("{x-correlation-id}o"),
        "event": "access",
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "query": atoms.get("q") or None,
        "status": int(status) if status.isdigit() else status,
        "bytes": atoms.get("B"),
        "seconds": (atoms.get("D") or 0) / 1e6,
        "remote_addr": atoms.get("h"),
        "user_agent": atoms.get("{user-agent}i"),
        "model_version": atoms.get("{x-model-version}o"),
    }


class _Atoms(dict[str, Any]):
    """gunicorn's atoms for an access_log_format other than the JSON line's: an atom
    not built reads "-", as in gunicorn's own SafeAtoms."""

    def __missing__(self, key: str) -> str:
        return "-"


def _last_header(headers: Any, name: str) -> Any:
    """The last value of header `name` (lower case) in gunicorn's (name, value) pairs:
    the one gunicorn's atoms keep, since a later pair overwrites an earlier one."""
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


def access_atoms(resp: Any, req: Any, environ: Mapping[str, Any],
                 request_time: timedelta) -> dict[str, Any]:
    """The atoms `_access_fields` reads, each with the value gunicorn's `Logger.atoms`
    gives it (gunicorn 26, `gunicorn/glogging.py`), from the same response, request and
    environ."""
    status = resp.status
    if isinstance(status, str):
        status = status.split(None, 1)[0]
    return _Atoms({
        "h": environ.get("REMOTE_ADDR", "-"),
        "s": status,
        "m": environ.get("REQUEST_METHOD"),
        "U": environ.get("PATH_INFO"),
        "q": environ.get("QUERY_STRING"),
        "B": getattr(resp, "sent", None),
        "D": request_time.seconds * 1_000_000 + request_time.microseconds,
        "{user-agent}i": _last_header(getattr(req, "headers", ()), "user-agent"),
        "{x-correlation-id}o": _last_header(resp.headers, "x-correlation-id"),
        "{x-model-version}o": _last_header(resp.headers, "x-model-version"),
    })


class AccessLine:
    """A worker's access logger, in place of gunicorn's `Logger.access` (same call,
    same record on the `gunicorn.access` logger, same JSON line).

    Installed by `install(worker_log)` from `post_worker_init`, in the worker, before it
    serves: gunicorn's workers call `self.log.access(resp, req, environ, request_time)`
    after each response, which finds this instance attribute first. The record is made
    and handed to the handlers directly: `Logger.info` would also walk the stack for
    the caller's file and line, which the JSON line does not show."""

    def __init__(self, log_format: str, on_error: Callable[[str], Any]) -> None:
        self.logger = logging.getLogger("gunicorn.access")
        self.log_format = log_format
        self.on_error = on_error

    @classmethod
    def install(cls, worker_log: Any) -> None:
        """Replace gunicorn's `worker_log.access` (worker_log: its glogging.Logger)."""
        worker_log.access = cls(worker_log.cfg.access_log_format, worker_log.error)

    def __call__(self, resp: Any, req: Any, environ: Mapping[str, Any],
                 request_time: timedelta) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):  # INFERD_ACCESS_LOG=false
            return
        try:
            atoms = access_atoms(resp, req, environ, request_time)
            logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0,
                                            self.log_format, (atoms,), None))
        except Exception:
            # As gunicorn does: a failed access line is an error line, not a failed request.
            self.on_error(traceback.format_exc())


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The timestamp's whole second, formatted once a second rather than once a
        # line (one pair, replaced whole: threads may share this formatter).
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            # PERF: gunicorn's access records carry no `extra=` fields, so the scan
            # for them (_dumps) is skipped on the busiest line.
            doc = self._doc(record, _access_fields(record.args))
            return orjson.dumps(doc, default=str).decode()
        return self._dumps(record, {
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or correlation_id.get(),
        })

    def _timestamp(self, record: logging.LogRecord) -> str:
        whole = int(record.created)
        second, text = self._second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def _doc(self, record: logging.LogRecord, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "timestamp": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": fields.pop("message"),
            "correlation_id": fields.pop("correlation_id"),
            "pid": record.process,
            **fields,
        }

    def _dumps(self, record: logging.LogRecord, fields: dict[str, Any]) -> str:
        doc = self._doc(record, fields)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "info") -> None:
    """Send the `inferd` loggers to stderr as JSON (idempotent)."""
    # Warnings go through logging, so they too are JSON lines rather than raw stderr.
    logging.captureWarnings(True)
    logger = logging.getLogger("inferd")
    logger.setLevel(level.upper())
    if not logger.handlers:  # gunicorn's logconfig_dict may have set one up already
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False


def gunicorn_logconfig(level: str = "info", access_log: bool = True) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs as JSON on stderr too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "inferd.common.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING",
                                "handlers": ["stderr"], "propagate": False},
            "inferd": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # Python warnings (a library's deprecation notice, say), once captured below.
            "py.warnings": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
    }
