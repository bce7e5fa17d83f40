"""Slow clients for the integration tests: each drips a request a byte at a time, over
and over, until stopped. A server that gives each of them a thread for as long as it
likes has none left for anyone else."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

BODY_LENGTH = 1000  # what a body dripper announces; it never sends that much


@dataclass
class SlowClient:
    """A thread that connects to `port` and sends, one byte every `pace` seconds:
    the headers of a request (phase "headers"), or complete headers and then the body
    (phase "body"). When the server answers or closes, it notes the status line and
    connects again; it ends by itself after `max_seconds`."""

    port: int
    phase: str  # "headers" | "body"
    pace: float = 0.5
    max_seconds: float = 30.0
    host: str = "127.0.0.1"
    answers: list[str] = field(default_factory=list)  # first line of each answer, or ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SlowClient:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"slow-{self.phase}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _request(self) -> tuple[bytes, bytes]:
        head = f"POST /predict/ HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        if self.phase == "headers":
            return b"", (head + "X-Padding: " + "a" * 4000).encode()
        full_head = f"{head}Content-Length: {BODY_LENGTH}\r\n\r\n".encode()
        return full_head, b'{"features": [[' + b"1," * BODY_LENGTH

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.answers.append(self._one(deadline))

    def _one(self, deadline: float) -> str:
        prefix, drip = self._request()
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port),
                                                                    timeout=5) as sock:
            sock.sendall(prefix)
            sock.settimeout(self.pace)
            for i in range(len(drip)):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return "stopped"
                sock.sendall(drip[i:i + 1])
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(4096)  # waits `pace`: the drip's rhythm
                    return answer.split(b"\r\n", 1)[0].decode(errors="replace")
        return ""  # the server closed (or reset) the connection
