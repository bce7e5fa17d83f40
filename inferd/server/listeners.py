"""Who can reach the sockets gunicorn really listens on.

The admin endpoints replace the served model, so without a token they must not face
the network. Judging that from INFERD_BIND would be wrong twice over: `--bind` or
GUNICORN_CMD_ARGS can override it, and under socket activation systemd hands gunicorn
sockets it never bound (LISTEN_FDS), whatever INFERD_BIND says. So inferd asks the
listening sockets themselves, after gunicorn has them (the `when_ready` hook, before
any worker is forked): `exposed_addresses` names every one that is not loopback.

A unix socket counts as local (its file mode guards it); an IPv4-mapped IPv6 address
is judged by its IPv4 part; the wildcard addresses (`0.0.0.0`, `::`) are exposed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def describe(sock: socket.socket) -> tuple[str, bool]:
    """(address as shown in logs, whether other hosts can connect to it)."""
    name: Any = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name if isinstance(name, str) else name!r}", False
    host, port = name[0], name[1]
    shown = f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
    return shown, not _is_loopback(host)


def exposed_addresses(listeners: Iterable[Any]) -> list[str]:
    """The addresses, among gunicorn's listeners (its socket wrappers or plain sockets),
    that other hosts can connect to."""
    found = []
    for listener in listeners:
        shown, exposed = describe(getattr(listener, "sock", listener))
        if exposed:
            found.append(shown)
    return found
