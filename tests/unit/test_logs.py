"""The JSON log formatter: app records, gunicorn's access records, and the config."""

from __future__ import annotations

import datetime
import json
import logging

from gunicorn.glogging import Logger as GunicornLogger

from inferd.common import logs


def format_record(record: logging.LogRecord) -> dict[str, object]:
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def test_app_records_carry_the_correlation_id_and_their_extra_fields() -> None:
    token = logs.correlation_id.set("cid-42")
    try:
        record = logging.LogRecord("inferd.admin", logging.WARNING, __file__, 1,
                                   "refused %s", ("x",), None)
        record.event = "reload"
        record.result = "forbidden"
        doc = format_record(record)
    finally:
        logs.correlation_id.reset(token)
    assert doc["message"] == "refused x"
    assert doc["level"] == "warning"
    assert doc["correlation_id"] == "cid-42"
    assert (doc["event"], doc["result"]) == ("reload", "forbidden")
    assert str(doc["timestamp"]).endswith("Z")


class _Cfg:
    """The few gunicorn settings `Logger.atoms` reads."""
    access_log_format = '%(h)s "%(r)s" %(s)s'


def test_gunicorn_access_records_become_access_events_with_the_response_correlation_id(
) -> None:
    # The atoms exactly as gunicorn builds them for a request, from its own code.
    class Resp:
        status = "200 OK"
        sent = 50
        headers = [("X-Correlation-ID", "cid-from-header"), ("X-Model-Version", "3")]

    environ = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "POST", "RAW_URI": "/predict/",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/predict/", "QUERY_STRING": ""}
    req_headers = [("USER-AGENT", "curl/8")]
    atoms = GunicornLogger.atoms(GunicornLogger.__new__(GunicornLogger), Resp(), req_headers,
                                 environ, datetime.timedelta(microseconds=1234))
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1,
                               _Cfg.access_log_format, (atoms,), None)
    doc = format_record(record)
    assert doc["event"] == "access"
    assert doc["message"] == "POST /predict/ 200"
    assert doc["correlation_id"] == "cid-from-header"
    assert (doc["method"], doc["path"], doc["status"]) == ("POST", "/predict/", 200)
    assert doc["remote_addr"] == "10.1.2.3"
    assert doc["model_version"] == "3"
    assert doc["user_agent"] == "curl/8"
    assert doc["seconds"] == 0.001234


def test_access_lines_can_be_turned_off_without_losing_errors() -> None:
    on = logs.gunicorn_logconfig("info", access_log=True)["loggers"]
    off = logs.gunicorn_logconfig("info", access_log=False)["loggers"]
    assert on["gunicorn.access"]["level"] == "INFO"
    assert off["gunicorn.access"]["level"] == "WARNING"
    assert off["gunicorn.error"]["level"] == "INFO"
