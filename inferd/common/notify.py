"""systemd's readiness protocol (sd_notify), sent by the process that can prove it.

`Type=notify` services tell systemd they are up by sending `READY=1` in a datagram
to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace). inferd's contract is that READY=1 means "a model can be served":

- gunicorn's master would send READY=1 itself right after binding, before any
  worker exists (gunicorn/arbiter.py `Arbiter.start`, `systemd.sd_notify("READY=1
  ...")`). `claim()` runs in the master's `on_starting` hook, before that call, and
  removes `NOTIFY_SOCKET` from the environment, so gunicorn's notification is a
  no-op and no child (the bootstrap fetch, say) inherits the variable.
- The master keeps the address in this module; forked workers inherit it. A worker
  calls `serving()` each time it has loaded a slot completely (at boot, and after
  every reload): the first one to do so makes the service ready, and every one
  updates `STATUS=` with the version and generation it serves. The unit therefore
  sets `NotifyAccess=all`; the master, which loads no model, never notifies.

Without `$NOTIFY_SOCKET` (not under systemd, or a test without the socket) every
call here does nothing. A failed send is logged, never raised: readiness is a
courtesy to the service manager and must not take a request down.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("inferd.notify")

_claimed: str | None = None
_was_claimed = False


def claim() -> None:
    """Take `$NOTIFY_SOCKET` out of the environment and keep it for `send()`.

    Called once in the gunicorn master before it would announce readiness itself."""
    global _claimed, _was_claimed
    _claimed = os.environ.pop("NOTIFY_SOCKET", None) or None
    _was_claimed = True


def address() -> str | None:
    return _claimed if _was_claimed else os.environ.get("NOTIFY_SOCKET") or None


def send(*assignments: str) -> bool:
    """Send `KEY=value` lines in one datagram; True when sent, False when there is no
    notify socket or the send failed."""
    target = address()
    if target is None:
        return False
    if target.startswith("@"):  # abstract namespace: a leading NUL byte, no file
        target = "\0" + target[1:]
    payload = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(payload)
    except OSError as exc:
        log.warning("Could not notify the service manager: %s", exc,
                    extra={"event": "sd_notify_failed", "notify_socket": address(),
                           "error": str(exc)})
        return False
    return True


def serving(version: str | None, generation: int) -> bool:
    """A worker has loaded slot `generation` (model `version`) and can answer with it."""
    return send("READY=1",
                f"STATUS=Serving model version {version} (slot generation {generation})")
