"""Structured logs: one JSON object a line on stderr, each with a correlation id.

The correlation id of the request being served lives in a context variable, set by
the web middleware; records logged outside a request carry `null`. Any `extra=`
fields of a record become fields of its JSON object.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or correlation_id.get(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "info") -> None:
    """Send the `inferd` loggers to stderr as JSON (idempotent)."""
    logger = logging.getLogger("inferd")
    logger.setLevel(level.upper())
    if not logger.handlers:  # gunicorn's logconfig_dict may have set one up already
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False


def gunicorn_logconfig(level: str = "info") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error log as JSON on stderr too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "inferd.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # inferd's middleware writes the access lines (with correlation ids).
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            "inferd": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
    }
