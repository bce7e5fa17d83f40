"""Admin requests a browser sends on another site's behalf are refused.

Without a token, any web page a user on the network opens could POST /admin/reload or
/admin/rollback: a body-less POST is a "simple" cross-origin request, which a browser
sends without asking first. Browsers say where a request comes from (`Origin` on every
POST, `Sec-Fetch-Site` in current ones), and other clients (curl, the CLI, a fleet
script) send neither. So an admin request is refused (403, logged, counted) when:

- `Sec-Fetch-Site` says `cross-site` or `same-site` (another origin);
- `Origin` is present and names another host or port than the request's `Host`
  (`null`, which sandboxed frames and local files send, included);
- `Origin` is present, no admin token is configured, and `Host` is a name rather than
  an IP address or `localhost`: a page that rebinds its own DNS name to this server's
  address passes the origin comparison, and only the token would stop it then.

inferd's own `/docs` page, served from the same origin, still works. Behind a proxy,
the proxy must pass the client's `Host` on (nginx: `proxy_set_header Host $host`).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import falcon

from inferd.common import metrics
from inferd.common.errors import ForbiddenError

log = logging.getLogger("inferd.admin")

ADMIN_PREFIX = "/admin/"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None] | None:
    """("host", port) of `netloc` (a Host header or an origin's authority); None if it
    does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else default_port


def _names_an_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def foreign_reason(origin: str | None, host: str | None, fetch_site: str | None,
                   token_configured: bool) -> str | None:
    """Why an admin request with these headers came from another site; None if it did
    not (or was not sent by a browser)."""
    if fetch_site is not None and fetch_site.strip().lower() in _FOREIGN_FETCH_SITES:
        return f"Sec-Fetch-Site: {fetch_site.strip()[:40]}"
    if origin is None:
        return None
    scheme = origin.partition("://")[0].lower()
    from_origin = _host_port(origin.partition("://")[2], _DEFAULT_PORTS.get(scheme))
    to_host = _host_port(host or "", _DEFAULT_PORTS.get(scheme))
    if from_origin is None or to_host is None or from_origin != to_host:
        return "Origin names another site than Host"
    if not token_configured and not _names_an_address(to_host[0]):
        return "a browser request to a host name with no admin token (DNS rebinding)"
    return None


class AdminOriginGuard:
    """Falcon middleware: refuse cross-site admin requests before they reach the
    resource (see the module docstring)."""

    def __init__(self, token_configured: bool) -> None:
        self.token_configured = token_configured

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path + "/").startswith(ADMIN_PREFIX):
            return
        origin = req.get_header("Origin")
        reason = foreign_reason(origin, req.get_header("Host"),
                                req.get_header("Sec-Fetch-Site"), self.token_configured)
        if reason is None:
            return
        event = req.path[len(ADMIN_PREFIX):].strip("/") or "admin"
        event = event if event in ("reload", "rollback") else "admin"
        log.warning("Admin request refused: it came from another site", extra=_fields(
            event, reason, origin, req))
        metrics.RELOADS.labels(event, "forbidden").inc()
        raise ForbiddenError("Forbidden")


def _fields(event: str, reason: str, origin: str | None,
            req: falcon.Request) -> dict[str, Any]:
    return {"event": event, "result": "forbidden", "reason": reason,
            "origin": (origin or "")[:200] or None, "host": (req.get_header("Host") or "")[:200],
            "remote_addr": req.remote_addr}
