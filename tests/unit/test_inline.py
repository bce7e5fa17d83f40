"""Which requests a worker answers on its main thread: `inferd.server.inline` judges
whether a request is whole in the bytes peeked at, and `inferd.app.quick_routes` which
routes are quick. The worker itself, with real sockets and gunicorn, is in
tests/integration/test_inline_worker.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.app import quick_routes
from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.server import inline
from inferd.server.inline import RequestHead, whole_request
from inferd.serving.holder import ModelHolder
from tests.fakes import ConstantModel, write_model

BODY = b'{"features": [[1, 2, 3, 4]]}'


def request(*headers: str, body: bytes = BODY, line: str = "POST /predict/?x=1 HTTP/1.1",
            length: bool = True) -> bytes:
    head = [line, "Host: 127.0.0.1", *headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_a_whole_request_gives_its_method_and_path() -> None:
    assert whole_request(request()) == RequestHead("POST", "/predict/")
    assert whole_request(request(line="GET /ping HTTP/1.0", body=b"", length=False)) == (
        RequestHead("GET", "/ping"))
    # What follows it (a pipelined request, a partial one) is not its concern.
    assert whole_request(request() + b"POST /pre") == RequestHead("POST", "/predict/")
    assert whole_request(request("content-LENGTH:  28 ".replace("28", str(len(BODY))),
                                 length=False)) == RequestHead("POST", "/predict/")


@pytest.mark.parametrize("peeked", [
    request()[:-1],  # the body's last byte has not come
    request()[:30],  # nor the end of the head
    b"",
    request("Transfer-Encoding: chunked"),
    request("Expect: 100-continue"),
    request("Upgrade: h2c", "Connection: Upgrade"),
    request(f"Content-Length: {len(BODY)}"),  # two lengths
    request(length=False, body=b"").replace(b"\r\n\r\n", b"\r\nContent-Length: -1\r\n\r\n"),
    request(length=False, body=b"").replace(b"\r\n\r\n", b"\r\nContent-Length: 1e3\r\n\r\n"),
    request(" folded: continuation"),
    request("Bad header"),
    request("Name : value"),
    request(line="POST /predict/ HTTP/2.0"),
    request(line="POST /predict/"),
    request(line="POST predict HTTP/1.1"),
    request(line="P0ST /predict/ HTTP/1.1"),
    request(line="POST /pr\u00e9dict HTTP/1.1".encode().decode("latin-1")),
    request(body=b"x" * inline.MAX_INLINE_BYTES),  # whole, but over the limit
])
def test_anything_not_surely_whole_and_small_is_not(peeked: bytes) -> None:
    assert whole_request(peeked) is None


@pytest.fixture
def rule() -> Iterator[Callable[[RequestHead], bool]]:
    seen: list[RequestHead] = []

    def quick(head: RequestHead) -> bool:
        seen.append(head)
        return head.path == "/predict/"

    inline.answer_inline_when(quick)
    yield quick
    inline.answer_inline_when(None)


def test_the_applications_rule_decides_for_whole_requests(rule: Any) -> None:
    assert inline.answers_inline(request())
    assert not inline.answers_inline(request(line="POST /admin/reload HTTP/1.1"))
    assert not inline.answers_inline(request()[:-1])
    inline.answer_inline_when(None)
    assert not inline.answers_inline(request())  # no rule: the pool answers everything


@pytest.fixture
def holder(make_settings: Callable[..., Settings], model_path: Path,
           forests: tuple[Any, Any]) -> ModelHolder:
    settings = make_settings()
    write_model(model_path, forests[0])
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    return ModelHolder(reloader.store, reloader.counter)


def test_predictions_are_quick_while_a_compiled_model_serves_and_no_load_is_due(
        holder: ModelHolder) -> None:
    quick = quick_routes(holder)
    predictions = [RequestHead("POST", p) for p in (
        "/predict", "/predict/", "/invocations", "/v2/models/m/infer",
        "/v2/models/m/versions/2/infer")]
    assert not any(map(quick, predictions))  # nothing loaded yet: the pool loads it
    assert holder.current().form == "compiled"
    assert holder.serves_compiled()
    assert all(map(quick, predictions))
    for slow in (RequestHead("POST", "/admin/reload"), RequestHead("GET", "/metrics"),
                 RequestHead("GET", "/health/"), RequestHead("GET", "/predict/"),
                 RequestHead("POST", "/v2/models/m"), RequestHead("GET", "/docs")):
        assert not quick(slow), slow
    for probe in ("/ping", "/v2/health/live", "/v2/health/ready"):
        assert quick(RequestHead("GET", probe))
    # A reload published a slot: the next request loads it.
    holder.counter.bump(holder.counter.read() + 1)
    assert not holder.serves_compiled() and not any(map(quick, predictions))
    assert quick(RequestHead("GET", "/ping"))


def test_a_fallback_model_and_a_service_without_holder_predict_in_the_pool(
        make_settings: Callable[..., Settings], model_path: Path) -> None:
    settings = make_settings()
    write_model(model_path, ConstantModel(7))
    reloader = open_reloader(settings)
    assert reloader.run().status == "reloaded"
    fallback = ModelHolder(reloader.store, reloader.counter)
    assert fallback.current().form == "fallback"
    assert not quick_routes(fallback)(RequestHead("POST", "/predict/"))
    assert not quick_routes(None)(RequestHead("POST", "/predict/"))
    assert quick_routes(None)(RequestHead("GET", "/ping"))
