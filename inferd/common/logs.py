"""Structured logs: one JSON object a line on stderr, each with a correlation id.

The correlation id of the request being served lives in a context variable, set by
the web middleware; records logged outside a request carry `null`. Any `extra=`
fields of a record become fields of its JSON object. gunicorn's access records
arrive with its "atoms" (a dict of the request's facts) as their arguments; they
become the fields of an `access` event, the correlation id taken from the response
header the middleware set, since the context variable is gone by then.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Mapping
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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            return self._dumps(record, _access_fields(record.args))
        return self._dumps(record, {
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or correlation_id.get(),
        })

    def _dumps(self, record: logging.LogRecord, fields: dict[str, Any]) -> str:
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": fields.pop("message"),
            "correlation_id": fields.pop("correlation_id"),
            "pid": record.process,
            **fields,
        }
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
