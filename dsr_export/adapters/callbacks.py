"""Ticket callbacks on the wire: the session that POSTs them and what its answers mean.

The event and its signature are the domain's (:mod:`dsr_export.domain.events`); which URLs may
receive one is the URL judge's (:mod:`dsr_export.adapters.outbound`). This module sends: short
blips are retried here, longer outages by the orchestrator's durable back-off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dsr_export.domain import events
from dsr_export.domain.steps import CallbackDelivery

_TIMEOUT: Final = (5.0, 15.0)  # connect, read: a ticket system that hangs must not hold a worker
#: Receiver answers that will not change on a retry (bad URL, refused signature, ...).
_RETRYABLE_4XX: Final = frozenset({408, 409, 425, 429})


class CallbackDeliveryError(RuntimeError):
    """A delivery failed in a way a later attempt may fix. The message names no URL or secret."""


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
) -> CallbackDelivery:
    """POST one signed event. Raises :class:`CallbackDeliveryError` when a retry may help."""
    headers = events.signed_headers(key, msg_id, int(now.timestamp()), body)
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
        return CallbackDelivery(delivered=True, status=status)
    if 300 <= status < 400:
        return CallbackDelivery(False, status, permanent=True, reason="redirects are not followed")
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return CallbackDelivery(False, status, permanent=True, reason=f"receiver answered {status}")
    raise CallbackDeliveryError(f"callback not delivered: receiver answered {status}")
