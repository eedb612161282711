"""Ticket callbacks: the event, its Standard Webhooks signature, the SSRF guard and the sender.

A ticketing system learns a DSR's progress from signed JSON events POSTed to its
``callbackUrl``. The signature follows Standard Webhooks (https://www.standardwebhooks.com/):
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` with the key the
base64 bytes after ``whsec_``, so receivers can verify with any Standard Webhooks library.

The event carries ids, phase, timestamps and the deadline only: never the user's UPN, never a
Graph error message (it may quote the UPN), never the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

#: The events a ticket cares about (``type`` of the payload).
ACCEPTED: Final = "dsr.accepted"
EXPORTING: Final = "dsr.exporting"
COMPLETED: Final = "dsr.completed"
FAILED: Final = "dsr.failed"
CANCELLED: Final = "dsr.cancelled"
DEADLINE_WARNING: Final = "dsr.deadline_warning"
DEADLINE_OVERDUE: Final = "dsr.deadline_overdue"

#: Data fields an event may carry; everything else given to :func:`build_event` is dropped.
_DATA_FIELDS: Final = (
    "requestId",
    "phase",
    "operationId",
    "graphStatus",
    "progress",
    "submittedAt",
    "completedAt",
    "deadline",
    "daysLeft",
    "deadlineWarning",
    "overdue",
    "manifest",
    "errorCode",
)
_TIMEOUT: Final = (5.0, 15.0)  # connect, read: a ticket system that hangs must not hold a worker
#: Receiver answers that will not change on a retry (bad URL, refused signature, ...).
_RETRYABLE_4XX: Final = frozenset({408, 409, 425, 429})


class CallbackRefused(ValueError):
    """The URL may not receive callbacks (scheme, host not allowed, credentials in it)."""


class CallbackDeliveryError(RuntimeError):
    """A delivery failed in a way a later attempt may fix. The message names no URL or secret."""


def check_url(url: str, allowed_hosts: Iterable[str]) -> str:
    """Return ``url`` if callbacks may go there; raise :class:`CallbackRefused` saying why.

    The allowlist is the SSRF guard: without it a ticket could make the app POST to internal
    addresses (metadata endpoints, the task hub's storage). Redirects are never followed, so a
    listed host cannot bounce a callback elsewhere.
    """
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


def build_event(event_type: str, at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload shape: ``type``, ``timestamp``, ``data``."""
    kept = {key: data[key] for key in _DATA_FIELDS if data.get(key) is not None}
    return {"type": event_type, "timestamp": at.isoformat(), "data": kept}


def encode(event: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


@dataclass(frozen=True)
class Delivery:
    """What became of one delivery; ``permanent`` failures are not worth retrying."""

    delivered: bool
    status: int | None
    permanent: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Activity result form (non-secret)."""
        return {
            "delivered": self.delivered,
            "status": self.status,
            "permanent": self.permanent,
            "reason": self.reason,
        }


def session(*, backoff_factor: float = 0.5) -> requests.Session:
    """A session that retries short blips (connection resets, 502/503/504) a few times.

    Longer outages are the durable retry's job (minutes apart, surviving restarts). POST is
    retried because receivers deduplicate on ``webhook-id``. Retry-After is not honoured here:
    a long one would hold the worker; the durable retry waits instead.
    """
    retry = Retry(
        total=3,
        connect=3,
        read=2,
        status=2,
        backoff_factor=backoff_factor,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=False,
        raise_on_status=False,
        redirect=0,
    )
    http = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    http.mount("https://", adapter)
    return http


def deliver(
    http: requests.Session,
    url: str,
    key: bytes,
    msg_id: str,
    body: bytes,
    now: datetime,
) -> Delivery:
    """POST one signed event. Raises :class:`CallbackDeliveryError` when a retry may help."""
    headers = signed_headers(key, msg_id, int(now.timestamp()), body)
    try:
        response = http.post(
            url, data=body, headers=headers, timeout=_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        # Library messages quote the URL, whose query may hold a ticket token: name the type.
        raise CallbackDeliveryError(f"callback not delivered: {type(exc).__name__}") from None
    status = response.status_code
    response.close()
    if 200 <= status < 300:
        return Delivery(delivered=True, status=status)
    if 300 <= status < 400:
        return Delivery(False, status, permanent=True, reason="redirects are not followed")
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return Delivery(False, status, permanent=True, reason=f"receiver answered {status}")
    raise CallbackDeliveryError(f"callback not delivered: receiver answered {status}")
