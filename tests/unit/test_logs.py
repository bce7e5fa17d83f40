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


def test_each_line_has_its_own_records_time_to_the_millisecond() -> None:
    formatter = logs.JsonFormatter()
    stamps = []
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.0):
        record = logging.LogRecord("inferd", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        stamps.append(json.loads(formatter.format(record))["timestamp"])
    assert stamps == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.999Z",
                      "2023-11-14T22:13:21.500Z", "2023-11-14T22:13:19.000Z"]


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


class _Resp:
    status = "404 Not Found"
    sent = 73
    headers = [("Content-Type", "application/json"), ("X-Correlation-ID", "first"),
               ("x-correlation-id", "cid-7"), ("X-Model-Version", "12")]


class _Req:
    headers = [("HOST", "127.0.0.1:8000"), ("USER-AGENT", "wrk"), ("USER-AGENT", "curl/8")]


_ENVIRON = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "GET", "RAW_URI": "/nope?x=1",
            "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/nope", "QUERY_STRING": "x=1",
            "HTTP_USER_AGENT": "wrk,curl/8"}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _access_records(level: int) -> tuple[_Capture, logging.Logger, int]:
    logger = logging.getLogger("gunicorn.access")
    capture = _Capture()
    logger.addHandler(capture)
    previous = logger.level
    logger.setLevel(level)
    return capture, logger, previous


def test_the_workers_access_line_has_the_fields_gunicorns_own_atoms_give() -> None:
    took = datetime.timedelta(seconds=2, microseconds=5)
    gunicorn_atoms = GunicornLogger.atoms(GunicornLogger.__new__(GunicornLogger), _Resp(),
                                          _Req(), _ENVIRON, took)
    errors: list[str] = []
    capture, logger, previous = _access_records(logging.INFO)
    try:
        logs.AccessLine('%(h)s "%(r)s" %(s)s', errors.append)(_Resp(), _Req(), _ENVIRON, took)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
    [record] = capture.records
    assert errors == []
    assert record.args == {key: gunicorn_atoms[key] for key in record.args}
    ours, theirs = record, logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1,
                                             "%(s)s", (gunicorn_atoms,), None)
    ours.created = theirs.created = 0.0
    ours.msecs = theirs.msecs = 0.0
    assert format_record(ours) == format_record(theirs)
    assert format_record(ours)["correlation_id"] == "cid-7"
    assert format_record(ours)["user_agent"] == "curl/8"
    # Any other format still formats: an atom not built reads "-", as in gunicorn.
    assert ours.getMessage() == '10.1.2.3 "-" 404'


def test_no_access_atoms_are_built_while_access_lines_are_off() -> None:
    class Exploding(_Resp):
        @property
        def headers(self) -> list[tuple[str, str]]:  # type: ignore[override]
            raise AssertionError("atoms built for a line that is off")

    capture, logger, previous = _access_records(logging.WARNING)
    try:
        logs.AccessLine("%(s)s", [].append)(Exploding(), _Req(), _ENVIRON,
                                            datetime.timedelta(0))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
    assert capture.records == []


def test_a_failing_access_line_is_an_error_line_not_a_failed_request() -> None:
    class Broken(_Resp):
        status = None  # type: ignore[assignment]
        sent = 0

        @property
        def headers(self) -> list[tuple[str, str]]:  # type: ignore[override]
            raise RuntimeError("broken response")

    errors: list[str] = []
    capture, logger, previous = _access_records(logging.INFO)
    try:
        logs.AccessLine("%(s)s", errors.append)(Broken(), _Req(), _ENVIRON,
                                                datetime.timedelta(0))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
    assert capture.records == []
    assert len(errors) == 1 and "broken response" in errors[0]


def test_the_access_line_replaces_gunicorns_in_a_worker() -> None:
    class WorkerLog:
        class cfg:  # noqa: N801  (gunicorn's attribute name)
            access_log_format = "%(s)s"

        def error(self, message: str) -> None:
            raise AssertionError(message)

    worker_log = WorkerLog()
    logs.AccessLine.install(worker_log)
    assert isinstance(worker_log.access, logs.AccessLine)  # type: ignore[attr-defined]
    assert worker_log.access.log_format == "%(s)s"  # type: ignore[attr-defined]


def test_access_lines_can_be_turned_off_without_losing_errors() -> None:
    on = logs.gunicorn_logconfig("info", access_log=True)["loggers"]
    off = logs.gunicorn_logconfig("info", access_log=False)["loggers"]
    assert on["gunicorn.access"]["level"] == "INFO"
    assert off["gunicorn.access"]["level"] == "WARNING"
    assert off["gunicorn.error"]["level"] == "INFO"
