"""The ``send_callback`` activity: sign one event and POST it to the ticket's callback URL.

The signing secret is read here, from settings, and used here only: it is never part of the
activity's input or result (both persist in the task hub), nor of any log line or exception.
The URL is checked against the allowlist again at send time, because the allowlist may have
shrunk since the request was accepted.

Outcomes: a result for what a retry will not change (delivered, or refused for good); an
exception, without URL or secret in its text, for what a later attempt may fix.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import requests

from dsr_export import callbacks
from dsr_export.logs import log_event
from dsr_export.settings import SettingsError, callback_settings

bp = df.Blueprint()


@functools.cache
def _http() -> requests.Session:
    return callbacks.session()


def _now() -> datetime:
    return datetime.now(UTC)


@bp.activity_trigger(input_name="job")
def send_callback(job: dict[str, Any]) -> dict[str, Any]:
    """Deliver ``job["event"]`` to ``job["url"]``, signed with ``job["messageId"]``."""
    event_type = str(job["event"].get("type"))
    try:
        settings = callback_settings()
        key = settings.signing_key()
        callbacks.check_url(job["url"], settings.allowed_hosts)
    except (SettingsError, callbacks.CallbackRefused) as exc:
        return _refused(job, event_type, str(exc))
    try:
        delivery = callbacks.deliver(
            _http(), job["url"], key, job["messageId"], callbacks.encode(job["event"]), _now()
        )
    except callbacks.CallbackDeliveryError as exc:
        log_event(
            "callback_attempt_failed",
            level=logging.WARNING,
            request_id=job["requestId"],
            event_type=event_type,
            message_id=job["messageId"],
            reason=str(exc),
        )
        raise
    finally:
        del key
    log_event(
        "callback_sent" if delivery.delivered else "callback_refused",
        level=logging.INFO if delivery.delivered else logging.WARNING,
        request_id=job["requestId"],
        event_type=event_type,
        message_id=job["messageId"],
        status=delivery.status,
        reason=delivery.reason,
    )
    return delivery.to_dict()


def _refused(job: dict[str, Any], event_type: str, reason: str) -> dict[str, Any]:
    log_event(
        "callback_refused",
        level=logging.WARNING,
        request_id=job["requestId"],
        event_type=event_type,
        message_id=job["messageId"],
        reason=reason,
    )
    return callbacks.Delivery(False, None, permanent=True, reason=reason).to_dict()
