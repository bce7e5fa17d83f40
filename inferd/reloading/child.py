"""Run a reload or a rollback in a short-lived child process, with a hard time bound.

Why a child: a reload imports MLflow and scikit-learn, downloads and validates a
model. Done inside a gunicorn worker, it would leave that worker a few hundred MB
of MLflow imports heavier for good, and a stalled registry could hold one of its
threads for as long as MLflow keeps retrying. In a child, the worker only waits on
a pipe; after INFERD_RELOAD_TIMEOUT seconds the child is killed, the kernel frees
its reload lock (flock), and the next reload reconciles whatever it left behind.

Protocol. The parent runs `python -m inferd.reloading.child run [--unless-version V]`
or `... rollback` with its own environment (the child reads the same settings),
plus INFERD_CORRELATION_ID so the child's log lines carry the request's id. The
child runs `inferd.reloading.reload.Reloader` under the reload lock, logs to stderr (shared
with the parent, so its lines land in the server's log) and writes exactly one
JSON object to stdout, then exits 0:

    {"result": {"status": ..., "detail": ..., "version": ..., "stage": ...,
                "generation": ..., "resolved_version": ...}}
    {"error": {"type": "SourceError", "message": "..."}}

Whatever MLflow prints to stdout is sent to stderr, so stdout carries that object only.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

from inferd.common import errors, logs
from inferd.common.errors import InferdError, ReloadProcessError
from inferd.common.settings import Settings, load_settings
from inferd.reloading.reload import ReloadResult
from inferd.reloading.sources import redact_uri

log = logging.getLogger("inferd.reloading.child")

CORRELATION_ENV = "INFERD_CORRELATION_ID"
# The child arms its own alarm a little after the parent's deadline: it dies even if
# its parent (a worker) was killed and can no longer kill it.
_SELF_DESTRUCT_MARGIN_SECONDS = 10

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _kill_live_children() -> None:
    """At the worker's exit: a reload child must not outlive the worker that waits on it."""
    with _live_lock:
        for proc in list(_live):
            if proc.poll() is None:
                proc.kill()


atexit.register(_kill_live_children)


class ChildReloads:
    """A `ReloadRunner` (see inferd.reloading.reload) that runs each call in a child process.

    Used by the gunicorn workers (admin endpoints, auto-refresh) and by the master's
    first fetch at start. Thread-safe: each call has its own child.
    """

    def __init__(self, settings: Settings, timeout: float | None = None) -> None:
        self.settings = settings
        self.timeout = float(timeout if timeout is not None else settings.reload_timeout)

    def run(self, unless_version: str | None = None) -> ReloadResult:
        args = ["run"] if unless_version is None else ["run", "--unless-version", unless_version]
        return self._call(args)

    def rollback(self) -> ReloadResult:
        return self._call(["rollback"])

    def _call(self, args: list[str]) -> ReloadResult:
        env = dict(os.environ)
        if cid := logs.correlation_id.get():
            env[CORRELATION_ENV] = cid
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferd.reloading.child", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None, env=env,
        )
        with _live_lock:
            _live.add(proc)
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ReloadProcessError(
                f"the reload did not finish within {self.timeout:g}s (INFERD_RELOAD_TIMEOUT) "
                f"and was stopped; is the model source answering? ({self._where()})"
            ) from None
        finally:
            with _live_lock:
                _live.discard(proc)
        return _parse_answer(out, proc.returncode)

    def _where(self) -> str:
        if self.settings.model_source == "local":
            return f"MODEL_PATH {self.settings.model_path}"
        return f"registry {redact_uri(self.settings.tracking_uri)}"


def _parse_answer(out: bytes, returncode: int) -> ReloadResult:
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise ReloadProcessError(
            f"the reload process exited with code {returncode} without an answer "
            "(see the server log for its output)"
        ) from None
    if "result" in answer:
        return ReloadResult(**answer["result"])
    error = answer.get("error") or {}
    kind = getattr(errors, str(error.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, InferdError)):
        kind = InferdError
    raise kind(str(error.get("message", "unknown error")))


# -- the child ----------------------------------------------------------------------------


def _answer(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from inferd.reloading.reload import open_reloader

    # A reload waiting for another gives up at half the bound, so it still has the
    # other half to finish in before its parent stops waiting.
    reloader = open_reloader(settings, lock_timeout=max(1.0, settings.reload_timeout / 2))
    try:
        if args.action == "rollback":
            result = reloader.rollback()
        else:
            result = reloader.run(unless_version=args.unless_version)
    except InferdError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    except Exception as exc:  # a bug or an OS error: still one answer, traceback in the log
        log.exception("Reload failed unexpectedly", extra={"event": "reload_child"})
        return {"error": {"type": "InferdError", "message": f"{type(exc).__name__}: {exc}"}}
    return {"result": dataclasses.asdict(result)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferd.reloading.child")
    parser.add_argument("action", choices=["run", "rollback"])
    parser.add_argument("--unless-version")
    args = parser.parse_args(argv)
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # from here on, anything printed goes to stderr
    try:
        settings = load_settings()
    except InferdError as exc:
        answer: dict[str, Any] = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    else:
        logs.configure(settings.log_level)
        if cid := os.environ.get(CORRELATION_ENV):
            logs.correlation_id.set(cid)
        signal.alarm(settings.reload_timeout + _SELF_DESTRUCT_MARGIN_SECONDS)
        answer = _answer(args, settings)
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
