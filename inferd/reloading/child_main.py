"""The reload child's entry point: `python -m inferd.reloading.child_main`.

Started only by `inferd.reloading.child.ChildReloads` (in a gunicorn worker, or in
the master for the first fetch), which describes the protocol. This process:

- loads its settings from the environment its parent rendered from the parent's
  `Settings` (`inferd.common.settings.child_environment`); it reads nothing its
  parent did not hand it;
- arms an alarm a little after the parent's deadline, so it dies even if its parent
  was killed and can no longer kill it;
- runs `inferd.reloading.reload.Reloader` under the reload lock;
- writes exactly one JSON answer to stdout and exits 0. Whatever MLflow prints to
  stdout is sent to stderr, so stdout carries that object only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from inferd.common import logs
from inferd.common.errors import InferdError
from inferd.common.settings import Settings, load_settings

log = logging.getLogger("inferd.reload_child")

# The child's own alarm goes off this long after the parent's deadline.
_SELF_DESTRUCT_MARGIN_SECONDS = 10


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
        return _error(exc)
    except Exception as exc:  # a bug or an OS error: still one answer, traceback in the log
        log.exception("Reload failed unexpectedly", extra={"event": "reload_child"})
        return {"error": {"type": "InferdError", "message": f"{type(exc).__name__}: {exc}"}}
    return {"result": dataclasses.asdict(result)}


def _error(exc: InferdError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": str(exc)}}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inferd.reloading.child_main")
    parser.add_argument("action", choices=["run", "rollback"])
    parser.add_argument("--unless-version")
    parser.add_argument("--correlation-id")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # from here on, anything printed goes to stderr
    try:
        settings = load_settings()  # the environment the parent rendered
    except InferdError as exc:
        answer = _error(exc)
    else:
        logs.configure(settings.log_level)
        if args.correlation_id:
            logs.correlation_id.set(args.correlation_id)
        signal.alarm(settings.reload_timeout + _SELF_DESTRUCT_MARGIN_SECONDS)
        answer = _answer(args, settings)
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
