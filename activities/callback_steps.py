"""The ``send_callback`` activity: sign one event and POST it to the ticket's callback URL.

The signing secret is read here, from settings, and used here only: it is never part of the
activity's input or result (both persist in the task hub), nor of any log line or exception.
The URL is checked against the allowlist again at send time, because the allowlist may have
shrunk since the request was accepted.

Outcomes: a result for what a retry will not change (delivered, or refused for good); an
exception, without URL or secret in its text, for what a later attempt may fix.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from activities.contract import activity
from dsr_export import composition
from dsr_export.domain import events, steps
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.errors import CallbackRefused
from dsr_export.domain.logs import log_event
from dsr_export.settings import CallbackSettings, SettingsError, callback_settings

bp = df.Blueprint()


def _signing_key(dsr_id: str, settings: CallbackSettings) -> bytes:
    """The DSR's tenant's own signing key when the registry names one (``callbackSecretRef``,
    read from Key Vault), else ``CALLBACK_SIGNING_SECRET``'s."""
    tenant = composition.tenant_of(dsr_id)
    if tenant is not None and tenant.callback_secret_ref:
        return composition.callback_secrets().key(tenant.callback_secret_ref)
    return settings.signing_key()


@activity(bp, steps.SEND_CALLBACK)
def send_callback(step: steps.SendCallback) -> steps.CallbackDelivery:
    """Deliver ``step.event`` to ``step.url``, signed with ``step.message_id``."""
    # Imported here, not at cold start: the sender pulls in requests.
    from dsr_export.adapters import callback_sender, outbound

    event_type = str(step.event.get("type"))
    try:
        settings = callback_settings()
        key = _signing_key(step.request_id, settings)
        outbound.check_url(step.url, settings.allowed_hosts, allow_loopback=settings.allow_loopback)
    except (SettingsError, CallbackRefused) as exc:
        return _refused(step, event_type, str(exc))
    try:
        delivery = composition.callback_sender().deliver(
            step.url,
            key,
            step.message_id,
            events.encode(step.event),
            composition.real_now(),  # receivers check its freshness against their clock
        )
    except callback_sender.CallbackDeliveryError as exc:
        log_event(
            "callback_attempt_failed",
            level=logging.WARNING,
            request_id=step.request_id,
            event_type=event_type,
            message_id=step.message_id,
            reason=str(exc),
        )
        raise
    finally:
        del key
    sent = entries.CallbackSent(
        event_id=f"callback:{step.message_id}",
        event_type=event_type,
        webhook_id=step.message_id,
        http_status=delivery.status,
        accepted=delivery.delivered,
    )
    composition.evidence_log().write(step.request_id, sent, composition.now())
    log_event(
        "callback_sent" if delivery.delivered else "callback_refused",
        level=logging.INFO if delivery.delivered else logging.WARNING,
        request_id=step.request_id,
        event_type=event_type,
        message_id=step.message_id,
        status=delivery.status,
        reason=delivery.reason,
    )
    return delivery


def _refused(step: steps.SendCallback, event_type: str, reason: str) -> steps.CallbackDelivery:
    log_event(
        "callback_refused",
        level=logging.WARNING,
        request_id=step.request_id,
        event_type=event_type,
        message_id=step.message_id,
        reason=reason,
    )
    return steps.CallbackDelivery(delivered=False, status=None, permanent=True, reason=reason)
