"""URIs as inferd shows them: never with credentials."""

from __future__ import annotations


def redact_uri(uri: str) -> str:
    """The URI without credentials (`https://user:pw@host` -> `https://***@host`),
    for anything shown to a client or written to a log or a manifest."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
