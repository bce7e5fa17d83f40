"""The parent's side of a reload in a child process: `ChildReloads` runs each reload
or rollback in a short-lived child (`inferd.reloading.child_main`) with a hard time
bound.

Why a child: a reload imports MLflow and scikit-learn, downloads and validates a
model. Done inside a gunicorn worker, it would leave that worker a few hundred MB
of MLflow imports heavier for good, and a stalled registry could hold one of its
threads for as long as MLflow keeps retrying. In a child, the worker only waits on
a pipe; after INFERD_RELOAD_TIMEOUT seconds the child is killed, the kernel frees
its reload lock (flock), and the next reload reconciles whatever it left behind.

Protocol, parent to child:

    python -m inferd.reloading.child_main run [--unless-version V] [--correlation-id C]
    python -m inferd.reloading.child_main rollback [--correlation-id C]

with the environment `inferd.common.settings.child_environment(settings, os.environ)`:
the parent's environment with every declared setting replaced by the parent's
`Settings` rendered from the one declaration (less the admin token, which a child
never needs). The child loads exactly the settings its parent holds, even ones built
in code, and MLflow in the child finds its own variables there (MLFLOW_TRACKING_TOKEN,
MLFLOW_HTTP_REQUEST_TIMEOUT...). The correlation id makes the child's log lines carry
the request's id.

Child to parent: the child logs to stderr (shared with the parent, so its lines
land in the server's log) and writes exactly one JSON object to stdout, then exits 0:

    {"result": {"status": ..., "detail": ..., "version": ..., "stage": ...,
                "generation": ..., "uri": ..., "resolved_version": ...}}
    {"error": {"type": "SourceError", "message": "..."}}

An error is raised again in the parent as the class it names (an InferdError
subclass), so the web layer maps it to the same status as an in-process reload.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading

from inferd.common import errors, logs
from inferd.common.errors import InferdError, ReloadProcessError
from inferd.common.settings import Settings, child_environment
from inferd.common.uris import redact_uri
from inferd.reloading.reload import ReloadResult, open_reloader

CHILD_MODULE = "inferd.reloading.child_main"

log = logging.getLogger("inferd.reload")

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
        if cid := logs.correlation_id.get():
            # One argument: a client's id may start with "-", which argparse would take
            # for an option of its own.
            args = [*args, f"--correlation-id={cid}"]
        proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None,
            env=child_environment(self.settings, os.environ),
        )
        with _live_lock:
            _live.add(proc)
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self._repair_after_death()
            raise ReloadProcessError(
                f"the reload did not finish within {self.timeout:g}s (INFERD_RELOAD_TIMEOUT) "
                f"and was stopped; is the model source answering? ({self._where()})"
            ) from None
        finally:
            with _live_lock:
                _live.discard(proc)
        if proc.returncode != 0:
            self._repair_after_death()
        return _parse_answer(out, proc.returncode)

    def _repair_after_death(self) -> None:
        """A child that died mid-reload (killed, or crashed) may have flipped `current`
        without bumping the counter: repair now, so every worker moves to the same
        slot at once rather than at the next reload. A child that answered exits 0."""
        try:
            open_reloader(self.settings).try_reconcile()
        except InferdError as exc:
            log.error("Could not repair the slot store after a reload process died: %s", exc,
                      extra={"event": "reconcile", "result": "failed"})

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
