"""The URL judge: every outbound URL is judged by the parser that sends the request.

Two of the app's controls hang on a URL: the bearer token goes to the configured Graph origin
and nowhere else, and a ticket's ``callbackUrl`` reaches only an allowlisted public host. Both
were once judged with :func:`urllib.parse.urlsplit` while requests/urllib3 sent the request;
the two parsers disagree (urllib3 ends the host at a backslash), so
``https://localhost\\.wild.example/`` passed the allowlist and was POSTed to ``localhost``.
So here a URL is parsed with urllib3's :func:`~urllib3.util.parse_url` (what requests prepares
a URL with), the sender sends the URL this judge returns, and anything two parsers could read
differently is refused outright: backslashes, control, format and whitespace characters,
userinfo.

For callbacks the host is also resolved at send time and every address must be public (no
loopback, private, link-local, CGNAT, multicast, reserved or cloud metadata address); the
sender connects to the address that was checked, so a second lookup cannot swap it
(DNS rebinding). Loopback receivers are allowed only under ``CALLBACK_ALLOW_LOOPBACK_UNSAFE``,
which the offline host sets for its test receivers and production never does.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from dsr_export.domain.errors import CallbackRefused

HTTPS_PORT: Final = 443
MAX_URL_LENGTH: Final = 2048
#: Addresses no callback may reach whatever their range says: Azure's wire server and IMDS.
_METADATA: Final = frozenset(
    ipaddress.ip_address(a) for a in ("168.63.129.16", "169.254.169.254", "fd00:ec2::254")
)
#: Shared address space (RFC 6598) is not "private" to :mod:`ipaddress`, but is not public.
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
#: NAT64's well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): where the IPv4 sits depends on a local prefix length,
#: and it is never a public destination, so it is refused whole.
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")

Resolver = Callable[[str, int], list[str]]


class UrlRefused(ValueError):
    """The URL is not one the app sends anything to; the message says why (never the query)."""


@dataclass(frozen=True)
class Target:
    """A judged URL: what will be sent, and the origin it goes to."""

    url: str
    host: str
    port: int
    request_uri: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port, the default port explicit (``:443`` is the same origin)."""
        return ("https", self.host, self.port)

    @property
    def host_header(self) -> str:
        """The ``Host`` header for a request to this target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == HTTPS_PORT else f"{host}:{self.port}"


def judge(url: object) -> Target:
    """Parse ``url`` as the sender will; refuse anything ambiguous or not plain https."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LENGTH:
        raise UrlRefused(f"must be a URL of at most {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise UrlRefused("must not contain a backslash")
    if any(_unsafe(char) for char in url):
        raise UrlRefused("must not contain control, format or whitespace characters")
    # The sender's own parser; imported here so that intake's cold start does not load it.
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parts = parse_url(url)
    except LocationParseError:
        raise UrlRefused("is not a valid URL") from None
    if (parts.scheme or "").lower() != "https":
        raise UrlRefused("must be an https:// URL")
    if parts.auth is not None or "@" in (parts.netloc or ""):
        raise UrlRefused("must not carry credentials")
    host = (parts.host or "").lower().rstrip(".").strip("[]")
    if not host:
        raise UrlRefused("must be an absolute URL with a host")
    port = parts.port if parts.port is not None else HTTPS_PORT
    return Target(url=parts.url, host=host, port=port, request_uri=parts.request_uri)


def same_origin(url: object, base_url: str) -> Target:
    """Judge ``url`` and require exactly the origin of ``base_url`` (scheme, host, port)."""
    target, base = judge(url), judge(base_url)
    if target.origin != base.origin:
        raise UrlRefused(f"is not on {base.host}:{base.port}")
    return target


def check_url(url: str, allowed_hosts: Iterable[str], *, allow_loopback: bool = False) -> str:
    """Return ``url`` if a callback may go there; raise :class:`CallbackRefused` saying why.

    The syntax and the allowlist only: the addresses are checked when sending
    (:func:`resolve_public`). Port 443 only, unless loopback receivers are allowed (the
    offline host's test receivers listen on random ports).
    """
    try:
        target = judge(url)
    except UrlRefused as exc:
        raise CallbackRefused(str(exc)) from None
    loopback = allow_loopback and _is_loopback_name(target.host)
    if target.port != HTTPS_PORT and not loopback:
        raise CallbackRefused("must use the https port 443")
    if not host_allowed(target.host, allowed_hosts):
        raise CallbackRefused(f"host {target.host} is not on the callback allowlist")
    return url


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Exact match, or a ``*.domain`` entry matching a subdomain. IP literals match exactly."""
    host = host.lower().rstrip(".")
    is_ip = _ip(host) is not None
    for entry in allowed_hosts:
        if host == entry:
            return True
        if not is_ip and entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def resolve_public(
    target: Target, *, allow_loopback: bool = False, resolver: Resolver | None = None
) -> str:
    """The address to connect to for ``target``: resolved once, every answer public.

    Every address the name resolves to is checked (a name answering one public and one private
    address is refused: the connection could pick either). Returns the first.
    """
    addresses = (resolver or _resolve)(target.host, target.port)
    if not addresses:
        raise CallbackRefused(f"host {target.host} does not resolve")
    for raw in addresses:
        address = _ip(raw)
        if address is None:
            raise CallbackRefused(f"host {target.host} resolved to something not an address")
        if allow_loopback and address.is_loopback:
            continue
        reason = _not_public(address)
        if reason is not None:
            raise CallbackRefused(f"host {target.host} resolves to a {reason} address")
    return addresses[0]


def _resolve(host: str, port: int) -> list[str]:
    literal = _ip(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone
        if address not in found:
            found.append(address)
    return found


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _not_public(address.ipv4_mapped)
        if address in _NAT64_LOCAL:
            return "local-use NAT64"
        # A tunnel or translator delivers to the IPv4 address inside: judged like that address
        # (2002:a9fe:a9fe::1 is 169.254.169.254 over 6to4), whatever the IPv6 range says.
        for form, inner in _embedded_ipv4(address):
            reason = _not_public(inner)
            if reason is not None:
                return f"{reason} ({form}-embedded)"
    if address in _METADATA:
        return "cloud metadata"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _embedded_ipv4(
    address: ipaddress.IPv6Address,
) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses a 6to4, Teredo (server and client) or NAT64 address carries."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        found.extend(("Teredo", inner) for inner in address.teredo)
    if address in _NAT64:
        found.append(("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
    return found


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _is_loopback_name(host: str) -> bool:
    address = _ip(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _unsafe(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"}
