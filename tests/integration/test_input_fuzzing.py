"""Fuzzed input against a real 2-worker server: schemathesis from `/openapi.json`, and
hypothesis-generated bodies both on the request parser and on the wire.

What must hold for every input: an answer that the OpenAPI document allows, never a
5xx, never a dropped connection, and a server that still predicts afterwards.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from inferd.common.errors import BadRequestError
from inferd.web.codecs import native as payload
from tests.fakes import iris_forest
from tests.integration.servers import HTTP_TIMEOUT, InferdServer, start_local, stop_inferd

pytestmark = pytest.mark.integration

TOKEN = "fuzzing-secret"
MAX_BODY = 64 * 1024  # small, so oversized bodies are cheap to generate
MAX_ROWS = 100
EXAMPLES = 20  # per operation: bounded, so the module stays within seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferdServer]:
    base = tmp_path_factory.mktemp("fuzzing")
    srv = start_local(base, iris_forest(n_estimators=3), admin_token=TOKEN,
                      INFERD_MAX_BODY_BYTES=str(MAX_BODY), INFERD_MAX_ROWS=str(MAX_ROWS))
    yield srv
    assert srv.predict().status_code == 200, "the server no longer predicts after fuzzing"
    stop_inferd(srv)


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
        server: InferdServer) -> None:
    # Each operation's hypothesis strategy is driven directly, rather than through
    # schemathesis' pytest plugin, which depends on pytest's internals.
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    assert sum(op.path.startswith("/v2") for op in operations) >= 9  # the v2 routes too
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # Without the token: every admin call must be refused (schemathesis also
            # checks that the declared security is enforced), so nothing generated
            # changes the model.
            response = case.call(headers={"Connection": "close"}, timeout=HTTP_TIMEOUT)
            # A row's width must equal the serving model's feature count, which changes
            # with the model and so is not in the schema: a schema-valid row of the
            # wrong width is rightly a 400, which this one check would call a rejection
            # of valid data.
            case.validate_response(
                response, excluded_checks=[schemathesis.checks.positive_data_acceptance])
            assert response.status_code < 500, response.text

        check()


# -- the parser, in-process ----------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=30,
)
ROWS = st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(
    min_value=-(2**53), max_value=2**53), min_size=1, max_size=6), min_size=1, max_size=12)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_the_parser_answers_arbitrary_bytes_with_rows_or_a_clear_error(body: bytes) -> None:
    try:
        rows = payload.decode(body, MAX_ROWS)
    except BadRequestError as exc:
        assert str(exc)
        return
    assert rows.ndim == 2 and rows.shape[0] >= 1


@given(JSON_VALUES)
@settings(max_examples=300, deadline=None)
def test_the_parser_answers_any_json_features_with_rows_or_a_clear_error(value: Any) -> None:
    body = json.dumps({"features": value}).encode()
    try:
        rows = payload.decode(body, MAX_ROWS)
    except BadRequestError as exc:
        assert str(exc)
        return
    assert rows.ndim == 2 and (rows == rows).all()  # finite numbers only


@given(ROWS)
@settings(max_examples=200, deadline=None)
def test_the_parser_keeps_every_well_formed_matrix(rows: list[list[float]]) -> None:
    width = len(rows[0])
    body = json.dumps({"features": rows}).encode()
    if any(len(r) != width for r in rows):
        with pytest.raises(BadRequestError):
            payload.decode(body, MAX_ROWS)
        return
    decoded = payload.decode(body, MAX_ROWS)
    assert decoded.shape == (len(rows), width)
    assert decoded.tolist() == [[float(v) for v in r] for r in rows]


# -- on the wire ---------------------------------------------------------------------------

RAW_BODIES = (
    st.binary(max_size=2000)
    | JSON_VALUES.map(lambda v: json.dumps({"features": v}).encode())
    | st.integers(min_value=1, max_value=5000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(min_value=1, max_value=5000).map(
        lambda depth: b'{"features": ' + b"[" * depth + b"1" + b"]" * depth + b"}")
)


@given(RAW_BODIES)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_body_gets_a_json_4xx_or_a_prediction(server: InferdServer, body: bytes) -> None:
    resp = requests.post(f"{server.url}/predict/", data=body, timeout=HTTP_TIMEOUT,
                         headers={"Connection": "close", "Content-Type": "application/json"})
    assert resp.status_code in (200, 400, 413), (body[:80], resp.status_code, resp.text)
    answer = resp.json()
    assert ("predictions" in answer) if resp.status_code == 200 else answer["detail"]


def _raw_exchange(server: InferdServer, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("name, request_bytes, status", [
    ("body longer than the limit, declared", b"POST /predict/ HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (MAX_BODY + 1) + b"x" * (MAX_BODY + 1),
     b"413"),
    ("chunked body longer than the limit", b"POST /predict/ HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
     + b"%x\r\n" % (MAX_BODY + 10) + b"[" * (MAX_BODY + 10) + b"\r\n0\r\n\r\n", b"413"),
    ("body shorter than its Content-Length", b"POST /predict/ HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 100\r\nConnection: close\r\n\r\n{\"features\"", None),
])
def test_malformed_framing_is_answered_not_dropped(server: InferdServer, name: str,
                                                    request_bytes: bytes,
                                                    status: bytes | None) -> None:
    if status is None:
        # The client lies about the length and then waits: the server must time the
        # read out or answer 400, not hang forever; a short socket timeout proves it.
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT) as sock:
            sock.sendall(request_bytes)
            sock.shutdown(socket.SHUT_WR)  # the rest of the body never comes
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    else:
        reply = _raw_exchange(server, request_bytes)
        assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
        assert b'"detail"' in reply
    assert server.predict().status_code == 200
