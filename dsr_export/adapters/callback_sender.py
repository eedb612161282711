"""Ticket callbacks on the wire: the sender that POSTs them and what its answers mean.

The event and its signature are the domain's (:mod:`dsr_export.domain.events`); whether a URL
may receive one is the URL judge's (:mod:`dsr_export.adapters.outbound`). The sender judges the
URL again, resolves its host once, checks every address is public, and connects to that
address while presenting and verifying the URL's host name (SNI and certificate): a DNS answer
that changes between the check and the connection cannot redirect the POST. Short blips are
retried here (on the same address), longer outages by the orchestrator's durable back-off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dsr_export.adapters import outbound
from dsr_export.domain import events, pacing
from dsr_export.domain.errors import CallbackRefused
from dsr_export.domain.steps import CallbackDelivery

_TIMEOUT: Final = (5.0, 15.0)  # connect, read: a ticket system that hangs must not hold a worker
#: Receiver answers that will not change on a retry (bad URL, refused signature, ...).
_RETRYABLE_4XX: Final = frozenset({408, 409, 425, 429})


class CallbackDeliveryError(RuntimeError):
    """A delivery failed in a way a later attempt may fix. The message names no URL or secret."""


class _PinnedAdapter(HTTPAdapter):
    """Connects to the checked address; SNI and certificate checks use the URL's host name."""

    def __init__(self, hostname: str, retry: Retry) -> None:
        self._hostname = hostname
        super().__init__(max_retries=retry, pool_connections=1, pool_maxsize=1)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs.update(server_hostname=self._hostname, assert_hostname=self._hostname)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


class CallbackSender:
    """Sends signed events to judged, resolved, public addresses.

    ``allow_loopback`` is the offline host's ``CALLBACK_ALLOW_LOOPBACK_UNSAFE``; ``resolver``
    replaces DNS in tests. POST is retried because receivers deduplicate on ``webhook-id``;
    Retry-After is not honoured here (a long one would hold the worker; the durable retry
    waits instead).
    """

    def __init__(
        self,
        *,
        backoff_factor: float = pacing.CALLBACK_INLINE_BACKOFF_FACTOR,
        allow_loopback: bool = False,
        resolver: outbound.Resolver | None = None,
    ) -> None:
        self._retry = Retry(
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
        self._allow_loopback = allow_loopback
        self._resolver = resolver

    def deliver(
        self, url: str, key: bytes, msg_id: str, body: bytes, now: datetime
    ) -> CallbackDelivery:
        """POST one signed event. Raises :class:`CallbackDeliveryError` when a retry may help.

        A URL the judge refuses, or a host resolving to a non-public address, is a permanent
        refusal (the result says why): retrying would not make it safe.
        """
        try:
            target = outbound.judge(url)
            address = outbound.resolve_public(
                target, allow_loopback=self._allow_loopback, resolver=self._resolver
            )
        except (outbound.UrlRefused, CallbackRefused) as exc:
            return CallbackDelivery(False, None, permanent=True, reason=f"callbackUrl {exc}")
        pinned = f"https://{_bracketed(address)}:{target.port}{target.request_uri}"
        headers = {
            **events.signed_headers(key, msg_id, int(now.timestamp()), body),
            "Host": target.host_header,
        }
        prepared = requests.Request("POST", pinned, data=body, headers=headers).prepare()
        adapter = _PinnedAdapter(target.host, self._retry)
        with requests.Session() as session:
            # The CA bundle as requests would pick it (REQUESTS_CA_BUNDLE); never a proxy: the
            # connection must go to the address that was checked.
            trust = session.merge_environment_settings(target.url, {}, None, None, None)["verify"]
            try:
                response = adapter.send(
                    prepared, timeout=_TIMEOUT, verify=True if trust is None else trust, proxies={}
                )
            except requests.RequestException as exc:
                # Library messages quote the URL, whose query may hold a ticket token.
                raise CallbackDeliveryError(
                    f"callback not delivered: {type(exc).__name__}"
                ) from None
            finally:
                adapter.close()
        status = response.status_code
        response.close()
        return _verdict(status)


def _verdict(status: int) -> CallbackDelivery:
    if 200 <= status < 300:
        return CallbackDelivery(delivered=True, status=status)
    if 300 <= status < 400:
        return CallbackDelivery(False, status, permanent=True, reason="redirects are not followed")
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return CallbackDelivery(False, status, permanent=True, reason=f"receiver answered {status}")
    raise CallbackDeliveryError(f"callback not delivered: receiver answered {status}")


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
