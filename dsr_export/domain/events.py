"""The ticket's callback events: their names, their payload and its Standard Webhooks signature.

A ticketing system learns a DSR's progress from signed JSON events POSTed to its
``callbackUrl``. The signature follows Standard Webhooks (https://www.standardwebhooks.com/):
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` with the key the
base64 bytes after ``whsec_``, so receivers can verify with any Standard Webhooks library.
Signing is pure (the key and the time are passed in); sending is the adapters' job.

The event carries ids, phase, timestamps and the deadline only: never the user's UPN, never a
Graph error message (it may quote the UPN), never the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

#: The events a ticket cares about (``type`` of the payload).
ACCEPTED: Final = "dsr.accepted"
EXPORTING: Final = "dsr.exporting"
COMPLETED: Final = "dsr.completed"
FAILED: Final = "dsr.failed"
CANCELLED: Final = "dsr.cancelled"
DEADLINE_WARNING: Final = "dsr.deadline_warning"
DEADLINE_OVERDUE: Final = "dsr.deadline_overdue"
# After the export (docs/ticketing.md): the lifecycle's own events.
DEADLINE_EXTENDED: Final = "deadline.extended"
RETRIED: Final = "export.retried"
DELIVERED: Final = "export.delivered"
ERASED: Final = "export.erased"

#: Data fields an event may carry; everything else given to :func:`build_event` is dropped.
_DATA_FIELDS: Final = (
    "requestId",
    "tenantId",
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
    "originalDeadline",
    "previousDeadline",
    "extensionDays",
    "attempt",
    "expiresAt",
    "receiptId",
    "deletedAt",
)


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
