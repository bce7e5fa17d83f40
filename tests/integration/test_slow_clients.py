"""Slow clients cannot starve /predict/ (INFERD_READ_TIMEOUT).

One worker with two threads, and four clients that each drip a request one byte every
half second: two never finish their headers, two never finish their body. Without a
read deadline they hold both threads for good and every prediction waits forever;
with it, each is cut off after INFERD_READ_TIMEOUT seconds (a body with 408) and
predictions keep answering within a bounded time.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.servers import IRIS_ROWS, InferdServer, module_server
from tests.integration.slow_clients import SlowClient

pytestmark = pytest.mark.integration

READ_TIMEOUT = 2.0
WINDOW_SECONDS = 10.0
# Two threads, four slow clients that reconnect at once: a prediction waits behind at
# most two rounds of them, each cut off after READ_TIMEOUT.
BOUND_SECONDS = 4 * READ_TIMEOUT


server = module_server("slow", workers=1, INFERD_THREADS="2",
                       INFERD_READ_TIMEOUT=str(READ_TIMEOUT))


def test_slow_clients_do_not_starve_predictions(server: InferdServer) -> None:
    port = urlsplit(server.url).port
    assert port is not None
    slow = [SlowClient(port, phase, max_seconds=WINDOW_SECONDS + 5).start()
            for phase in ("headers", "body", "headers", "body")]
    latencies = []
    try:
        time.sleep(0.5)  # the slow ones hold the threads first
        ends = time.monotonic() + WINDOW_SECONDS
        while time.monotonic() < ends:
            started = time.monotonic()
            try:
                resp = requests.post(f"{server.url}/predict/", json={"features": IRIS_ROWS},
                                     headers={"Connection": "close"},
                                     timeout=BOUND_SECONDS + 4)
            except requests.Timeout:
                pytest.fail(f"/predict/ did not answer within {BOUND_SECONDS + 4:g}s "
                            "while slow clients held the threads")
            latencies.append(time.monotonic() - started)
            assert resp.status_code == 200, resp.text
    finally:
        for client in slow:
            client.stop()

    # A prediction may wait two rounds of slow clients (about 2 x READ_TIMEOUT), so the
    # window holds at least two even on a busy machine.
    assert len(latencies) >= 2
    assert max(latencies) < BOUND_SECONDS, latencies
    # Each slow client was cut off, again and again: headers by closing, a body by 408.
    for client in slow:
        assert len(client.answers) >= 2, (client.phase, client.answers)
    body_answers = [a for c in slow if c.phase == "body" for a in c.answers if a != "stopped"]
    assert any(a.startswith("HTTP/1.1 408") for a in body_answers), body_answers
    logged = [r for r in server.log_records() if r.get("event") == "slow_client"]
    assert {r["phase"] for r in logged} == {"headers", "body"}
