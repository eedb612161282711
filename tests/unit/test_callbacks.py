"""Signed callbacks: the published algorithm (checked with the standardwebhooks reference
verifier), the SSRF allowlist, and delivery to a real HTTPS receiver that is up, refusing or down.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response

from activities import callback_steps as callback_activity
from devhost.tls import TlsFiles, server_ssl_context
from dsr_export.adapters import callback_sender, outbound
from dsr_export.domain import events, steps
from dsr_export.domain.errors import CallbackRefused
from dsr_export.settings import CallbackSettings, SettingsError
from tests.unit.intake_fakes import SECRET, SECRET_KEY, app_settings

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _event() -> dict[str, object]:
    return events.build_event(
        events.COMPLETED,
        NOW,
        {
            "requestId": "RITM0001",
            "phase": "completed",
            "deadline": "2026-04-01T09:00:00+00:00",
            "overdue": False,
            "user": "ada@contoso.com",  # not an event field: must be dropped
            "progress": None,
        },
    )


# -- signing --
def test_signature_verifies_with_the_reference_implementation():
    body = events.encode(_event())
    timestamp = int(datetime.now(UTC).timestamp())  # the verifier checks freshness
    headers = events.signed_headers(SECRET_KEY, "msg_1", timestamp, body)
    assert headers["webhook-signature"].startswith("v1,")
    verified = Webhook(SECRET).verify(body, headers)
    assert verified["data"]["requestId"] == "RITM0001"


def test_a_tampered_body_or_another_secret_fails_verification():
    body = events.encode(_event())
    timestamp = int(datetime.now(UTC).timestamp())
    headers = events.signed_headers(SECRET_KEY, "msg_1", timestamp, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"completed", b"cancelled"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(body, headers)


def test_known_answer():
    # The spec's construction spelled out: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64.
    digest = hmac.new(SECRET_KEY, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    assert events.sign(SECRET_KEY, "msg_1", 1_700_000_000, b"{}") == expected


def test_events_carry_ids_phase_and_deadline_but_no_personal_data():
    event = _event()
    assert event["type"] == "dsr.completed"
    assert event["timestamp"] == "2026-03-01T09:00:00+00:00"
    assert event["data"] == {
        "requestId": "RITM0001",
        "phase": "completed",
        "deadline": "2026-04-01T09:00:00+00:00",
        "overdue": False,
    }


# -- allowlist --
ALLOW = frozenset({"tickets.example.com", "*.service-now.com", "10.0.0.5"})


@pytest.mark.parametrize(
    "url",
    [
        "https://tickets.example.com/cb",
        "https://TICKETS.example.com:443/cb?x=1",
        "https://acme.service-now.com/api/now/cb",
        "https://a.b.service-now.com/",
        "https://10.0.0.5/cb",
    ],
)
def test_allowed_urls(url):
    assert outbound.check_url(url, ALLOW) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://tickets.example.com/cb", "https"),
        ("https://service-now.com/", "allowlist"),  # the wildcard covers subdomains only
        ("https://evilservice-now.com/", "allowlist"),
        ("https://tickets.example.com.evil.net/", "allowlist"),
        ("https://169.254.169.254/metadata/identity", "allowlist"),
        ("https://10.0.0.6/", "allowlist"),
        ("https://localhost/", "allowlist"),
        ("https://u:p@tickets.example.com/", "credentials"),
        ("https:///nohost", "host"),
        ("ftp://tickets.example.com/", "https"),
        ("https://[::1/", "valid URL"),
        ("https://tickets.example.com:8443/cb", "port 443"),  # the port is pinned too
    ],
)
def test_refused_urls(url, why):
    with pytest.raises(CallbackRefused, match=why):
        outbound.check_url(url, ALLOW)


def test_callback_settings_validate_the_secret_without_echoing_it():
    assert CallbackSettings.from_env({}).enabled is False
    good = CallbackSettings.from_env(
        {"CALLBACK_SIGNING_SECRET": SECRET, "CALLBACK_ALLOWED_HOSTS": " A.example.com, *.b.com "}
    )
    assert good.signing_key() == SECRET_KEY
    assert good.allowed_hosts == {"a.example.com", "*.b.com"}
    assert SECRET not in repr(good)
    for bad in ("plain", "whsec_!!!notbase64", "whsec_c2hvcnQ="):
        with pytest.raises(SettingsError) as caught:
            CallbackSettings.from_env({"CALLBACK_SIGNING_SECRET": bad})
        assert bad not in str(caught.value)
    with pytest.raises(SettingsError, match="CALLBACK_ALLOWED_HOSTS"):
        CallbackSettings.from_env({"CALLBACK_ALLOWED_HOSTS": "https://x.com/"})


# -- delivery to a real HTTPS receiver ------------------------------------------------------------
@pytest.fixture
def receiver(tls_files: TlsFiles) -> Iterator[HTTPServer]:
    server = HTTPServer(host="localhost", port=0, ssl_context=server_ssl_context(tls_files))
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def sender(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> callback_sender.CallbackSender:
    """The production sender minus the waits; loopback allowed (the receiver is local)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    return callback_sender.CallbackSender(backoff_factor=0, allow_loopback=True)


def _verifying_handler(seen: list[dict[str, object]]):
    def handle(request: Request) -> Response:
        try:
            event = Webhook(SECRET).verify(request.get_data(), dict(request.headers))
        except WebhookVerificationError:
            return Response("bad signature", status=401)
        seen.append({"event": event, "id": request.headers["webhook-id"]})
        return Response(status=204)

    return handle


def test_a_receiver_verifies_the_delivered_signature(receiver, sender):
    seen: list[dict[str, object]] = []
    receiver.expect_request("/cb", method="POST").respond_with_handler(_verifying_handler(seen))
    delivery = sender.deliver(
        receiver.url_for("/cb"),
        SECRET_KEY,
        "msg_abc",
        events.encode(_event()),
        datetime.now(UTC),
    )
    assert delivery.delivered is True
    assert delivery.status == 204
    assert seen == [{"event": _event(), "id": "msg_abc"}]


def test_a_refusing_receiver_is_a_permanent_failure(receiver, sender):
    receiver.expect_request("/cb").respond_with_data("no", status=404)
    delivery = sender.deliver(receiver.url_for("/cb"), SECRET_KEY, "m", b"{}", datetime.now(UTC))
    assert (delivery.delivered, delivery.permanent, delivery.status) == (False, True, 404)


def test_redirects_are_not_followed(receiver, sender):
    receiver.expect_request("/cb").respond_with_data(
        "", status=307, headers={"Location": "https://169.254.169.254/"}
    )
    delivery = sender.deliver(receiver.url_for("/cb"), SECRET_KEY, "m", b"{}", datetime.now(UTC))
    assert delivery.permanent is True
    assert "redirect" in str(delivery.reason)


def test_short_blips_are_retried_in_process(receiver, sender):
    receiver.expect_ordered_request("/cb").respond_with_data("", status=503)
    receiver.expect_ordered_request("/cb").respond_with_data("", status=200)
    delivery = sender.deliver(receiver.url_for("/cb"), SECRET_KEY, "m", b"{}", datetime.now(UTC))
    assert delivery.delivered is True
    assert len(receiver.log) == 2


def test_a_receiver_that_stays_down_raises_without_the_url(sender):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://localhost:{port}/cb?token=ticket-secret"
    with pytest.raises(callback_sender.CallbackDeliveryError) as caught:
        sender.deliver(url, SECRET_KEY, "m", b"{}", datetime.now(UTC))
    assert "ticket-secret" not in str(caught.value)
    assert "localhost" not in str(caught.value)


# -- the activity --
def _job(url: str) -> dict[str, object]:
    return steps.SendCallback(
        request_id="RITM0001", url=url, message_id="msg_1", event=_event()
    ).to_dict()


def _delivery(result: object) -> steps.CallbackDelivery:
    return steps.CallbackDelivery.from_dict(result)


def test_activity_delivers_and_keeps_the_secret_out_of_result_and_logs(
    receiver, sender, swap, caplog
):
    caplog.set_level(logging.DEBUG)
    seen: list[dict[str, object]] = []
    receiver.expect_request("/cb", method="POST").respond_with_handler(_verifying_handler(seen))
    swap(callback_sender=sender)
    with app_settings(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_ALLOWED_HOSTS="localhost",
        CALLBACK_ALLOW_LOOPBACK_UNSAFE="true",
    ):
        result = callback_activity.send_callback(_job(receiver.url_for("/cb")))
    assert result == steps.CallbackDelivery(delivered=True, status=204).to_dict()
    assert len(seen) == 1
    text = json.dumps(result) + " ".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text
    assert SECRET.removeprefix("whsec_") not in text
    assert "callback_sent" in text


def test_activity_rechecks_the_allowlist_at_send_time(receiver):
    with app_settings(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_ALLOWED_HOSTS="other.example.com",
        CALLBACK_ALLOW_LOOPBACK_UNSAFE="true",
    ):
        result = _delivery(callback_activity.send_callback(_job(receiver.url_for("/cb"))))
    assert result.delivered is False
    assert result.permanent is True
    assert "allowlist" in str(result.reason)
    assert receiver.log == []


def test_activity_without_a_secret_refuses_for_good():
    with app_settings(CALLBACK_SIGNING_SECRET="", CALLBACK_ALLOWED_HOSTS="localhost"):
        result = _delivery(callback_activity.send_callback(_job("https://localhost/cb")))
    assert result.permanent is True
    assert "CALLBACK_SIGNING_SECRET" in str(result.reason)


def test_activity_raises_for_a_receiver_that_is_down(sender, swap):
    swap(callback_sender=sender)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        app_settings(
            CALLBACK_SIGNING_SECRET=SECRET,
            CALLBACK_ALLOWED_HOSTS="localhost",
            CALLBACK_ALLOW_LOOPBACK_UNSAFE="true",
        ),
        pytest.raises(callback_sender.CallbackDeliveryError),
    ):
        callback_activity.send_callback(_job(f"https://localhost:{port}/cb"))
