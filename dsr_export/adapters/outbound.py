"""The URL judge for outbound calls: may a callback go to this URL?

The allowlist is the SSRF guard: without it a ticket could make the app POST to internal
addresses (metadata endpoints, the task hub's storage). Redirects are never followed, so a
listed host cannot bounce a callback elsewhere. Intake judges a ``callbackUrl`` when it accepts
the DSR, the sender again before every delivery (the allowlist may have shrunk since).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from dsr_export.domain.errors import CallbackRefused


def check_url(url: str, allowed_hosts: Iterable[str]) -> str:
    """Return ``url`` if callbacks may go there; raise :class:`CallbackRefused` saying why."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise CallbackRefused("is not a valid URL") from None
    if parts.scheme != "https":
        raise CallbackRefused("must be an https:// URL")
    if not host:
        raise CallbackRefused("must be an absolute URL with a host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("must not carry credentials")
    if not host_allowed(host, allowed_hosts):
        raise CallbackRefused(f"host {host} is not on the callback allowlist")
    return url


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Exact match, or a ``*.domain`` entry matching a subdomain. IP literals match exactly."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    for entry in allowed_hosts:
        if host == entry:
            return True
        if not is_ip and entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False
