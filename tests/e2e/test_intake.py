"""The intake end to end: concurrency, the queue, signed callbacks, cancel, listing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Response

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.tls import server_ssl_context
from tests.e2e.host import (
    CALLBACK_SECRET,
    TERMINAL,
    HostProcess,
    export_container,
    record_seen,
)

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def _new_user(graph: GraphSimulator) -> str:
    user = str(uuid.uuid4())
    graph.add_user(f"u{user[:8]}@contoso.example", user)
    return user


def _queue(azurite: Azurite, name: str, tls_files) -> QueueClient:
    queue = QueueClient.from_connection_string(
        azurite.connection_string, name, connection_verify=tls_files.ca_bundle
    )
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    return queue


@pytest.fixture
def receiver(tls_files) -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=server_ssl_context(tls_files))
    server.expect_request("/hooks/dsr", method="POST").respond_with_response(Response(status=204))
    server.start()
    yield server
    server.stop()


def test_twenty_parallel_posts_of_one_request_submit_one_export(
    host: HostProcess, e2e_graph: GraphSimulator
):
    user = _new_user(e2e_graph)
    request_id = f"PAR-{uuid.uuid4().hex[:8].upper()}"
    body = {"requestId": request_id, "user": user}
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: host.post("/exports", body), range(20)))
    assert {a.status_code for a in answers} == {202}
    assert host.wait_for(request_id, TERMINAL)["phase"] == "completed"
    assert e2e_graph.submissions_by_user()[user] == 1


def test_racing_first_submissions_for_two_people_leave_the_winners_received_record(
    host: HostProcess, e2e_graph: GraphSimulator
):
    """F-5, on the real task hub and evidence log: eight races of two first submissions of one
    new id for two different people. Whichever start wins, the evidence's ``received`` record
    (the last one, a correction included) names the person of the DSR that started."""
    for _ in range(8):
        request_id = f"RACE-{uuid.uuid4().hex[:8].upper()}"
        users = [_new_user(e2e_graph), _new_user(e2e_graph)]
        bodies = [{"requestId": request_id, "user": user} for user in users]
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(lambda body: host.post("/exports", body), bodies))
        assert sorted(a.status_code for a in answers) == [202, 409]
        winner = users[[a.status_code for a in answers].index(202)]
        evidence = host.get(f"/exports/{request_id}/evidence").json()
        received = [r for r in evidence["records"] if r["kind"] == "received"]
        assert received[-1]["data"]["userObjectId"] == winner, evidence
        assert evidence["verification"]["ok"] is True
        host.post(f"/exports/{request_id}/cancel", {"reason": "race test"})


PHASE_ORDER = [
    "accepted",
    "resolving_user",
    "preparing_storage",
    "submitting",
    "exporting",
    "finalizing",
    "completed",
]


def _watch_phases(host: HostProcess, request_id: str, timeout: float = 90) -> list[str]:
    """Every distinct phase the status API showed, in the order seen (polled tightly)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = host.get(f"/exports/{request_id}")
        if response.status_code == 200:
            phase = response.json()["phase"]
            if not seen or seen[-1] != phase:
                seen.append(phase)
            if phase in TERMINAL:
                return seen
        time.sleep(0.01)
    raise AssertionError(f"{request_id} did not finish; phases seen: {seen}")


def _verified_events(receiver: HTTPServer, last: str = "dsr.completed") -> list[dict[str, Any]]:
    """The callbacks received, signatures verified, once ``last`` has arrived.

    The terminal callback goes out after the status already shows the terminal phase.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        last.encode() in request.get_data() for request, _ in receiver.log
    ):
        time.sleep(0.05)
    verifier = Webhook(CALLBACK_SECRET)
    events = []
    for request, _ in receiver.log:
        record_seen(request.get_data(as_text=True))
        headers = {k.lower(): v for k, v in request.headers.items()}
        events.append(verifier.verify(request.get_data(), headers))  # raises on a bad signature
    return events


def test_a_servicenow_style_dsr_shows_its_phases_and_signed_callbacks_arrive(
    host: HostProcess, e2e_graph: GraphSimulator, receiver: HTTPServer
):
    request_id = f"RITM{uuid.uuid4().int % 10**7:07d}"
    received = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=1)))
    upn = f"sn{uuid.uuid4().hex[:6]}@contoso.example"
    e2e_graph.add_user(upn)
    body = {  # what a ServiceNow outbound REST message sends (docs/ticketing.md)
        "requestId": request_id,
        "user": upn,
        "regulation": "GDPR",
        "receivedAt": received.isoformat(),
        "requestedBy": "privacy.office",
        "callbackUrl": receiver.url_for("/hooks/dsr"),
    }
    assert host.post("/exports", body).status_code == 202
    seen = _watch_phases(host, request_id)
    assert seen[-1] == "completed"
    assert "exporting" in seen
    assert seen == sorted(seen, key=PHASE_ORDER.index), "phases only move forward"
    doc = host.get(f"/exports/{request_id}").json()
    deadline = datetime.fromisoformat(doc["deadline"])
    assert timedelta(days=28) <= deadline - received <= timedelta(days=31), "one calendar month"
    assert doc["overdue"] is False
    events = _verified_events(receiver)
    assert [e["type"] for e in events] == ["dsr.accepted", "dsr.exporting", "dsr.completed"]
    assert {e["data"]["requestId"] for e in events} == {request_id}
    assert events[-1]["data"]["manifest"]["blobCount"] > 0
    assert upn not in json.dumps(events), "callbacks carry ids, not the UPN"


def test_a_receiver_that_is_down_does_not_fail_the_dsr(
    host: HostProcess, e2e_graph: GraphSimulator
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    request_id = f"CBDOWN-{uuid.uuid4().hex[:8].upper()}"
    body = {
        "requestId": request_id,
        "user": _new_user(e2e_graph),
        "callbackUrl": f"https://127.0.0.1:{closed_port}/hooks/dsr",
    }
    assert host.post("/exports", body).status_code == 202
    assert host.wait_for(request_id, TERMINAL, timeout=120)["phase"] == "completed"
    # The completion callback is tried (with back-off) after the DSR is already complete.
    deadline = time.monotonic() + 60
    failed: list[str] = []
    while "dsr.completed" not in failed and time.monotonic() < deadline:
        failed = host.get(f"/exports/{request_id}").json().get("callbacks", {}).get("failed", [])
        time.sleep(0.1)
    assert failed == ["dsr.accepted", "dsr.exporting", "dsr.completed"]
    assert host.get(f"/exports/{request_id}").json()["phase"] == "completed"


def test_callback_to_a_host_off_the_allowlist_is_refused(host: HostProcess, e2e_graph):
    body = {
        "requestId": f"SSRF-{uuid.uuid4().hex[:8].upper()}",
        "user": _new_user(e2e_graph),
        "callbackUrl": "https://169.254.169.254/metadata",
    }
    response = host.post("/exports", body)
    assert response.status_code == 400
    assert [e["pointer"] for e in response.json()["errors"]] == ["/callbackUrl"]


def test_cancel_revokes_the_sas_and_ends_cancelled(
    host: HostProcess, e2e_graph: GraphSimulator, azurite: Azurite, tls_files
):
    request_id = f"CANCEL-{uuid.uuid4().hex[:8].upper()}"
    host.post("/exports", {"requestId": request_id, "user": _new_user(e2e_graph)})
    host.wait_for(request_id, {"exporting"})
    missing_reason = host.post(f"/exports/{request_id}/cancel", {})
    assert missing_reason.status_code == 400
    reason = "Jane Doe (+44 7700 900123) withdrew, jane\uff20contoso.example"
    answer = host.post(
        f"/exports/{request_id}/cancel", {"reason": reason, "reasonCode": "withdrawn"}
    )
    assert answer.status_code == 202
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "cancelled"
    # F-7: a code and the reason's hash, never its words (the status and the list alike).
    digest = hashlib.sha256(reason.encode()).hexdigest()
    assert doc["error"] == {
        "code": "Cancelled",
        "message": "cancelled on request",
        "reasonCode": "withdrawn",
        "reasonSha256": digest,
    }
    listed = host.get("/exports?phase=cancelled&top=200")
    assert "Jane" not in listed.text
    assert any(item["requestId"] == request_id for item in listed.json()["items"])
    assert doc["sas"]["revoked"] is True
    container = export_container(azurite, tls_files, doc["container"])
    assert container.get_container_access_policy()["signed_identifiers"] == []
    again = host.post(f"/exports/{request_id}/cancel", {"reason": "twice"})
    assert again.status_code == 409


def test_a_queue_message_becomes_a_dsr_with_its_callbacks(
    host: HostProcess,
    e2e_graph: GraphSimulator,
    azurite: Azurite,
    tls_files,
    receiver: HTTPServer,
):
    request_id = f"QUEUE-{uuid.uuid4().hex[:8].upper()}"
    message = json.dumps(
        {
            "requestId": request_id,
            "user": _new_user(e2e_graph),
            "callbackUrl": receiver.url_for("/hooks/dsr"),
        }
    )
    _queue(azurite, "dsr-requests", tls_files).send_message(
        base64.b64encode(message.encode()).decode()
    )
    assert _watch_phases(host, request_id)[-1] == "completed"
    types = [e["type"] for e in _verified_events(receiver)]
    assert types == ["dsr.accepted", "dsr.exporting", "dsr.completed"]


def test_an_invalid_queue_message_is_rejected_once_with_its_reason(
    host: HostProcess, azurite: Azurite, tls_files
):
    request_id = f"QBAD-{uuid.uuid4().hex[:8].upper()}"
    message = json.dumps({"requestId": request_id, "user": "not a user"})
    _queue(azurite, "dsr-requests", tls_files).send_message(
        base64.b64encode(message.encode()).decode()
    )
    rejected = _queue(azurite, "dsr-requests-rejected", tls_files)
    record = None
    deadline = time.monotonic() + 60
    while record is None and time.monotonic() < deadline:
        for item in rejected.peek_messages(max_messages=32):
            decoded = json.loads(base64.b64decode(item.content))
            if decoded.get("requestId") == request_id:
                record = decoded
        time.sleep(0.1)
    assert record is not None, "the rejection is recorded where an operator looks"
    assert "/user" in json.dumps(record)
    assert "not a user" not in json.dumps(record), "the raw body is not copied"
    assert host.get(f"/exports/{request_id}").status_code == 404
    poison = _queue(azurite, "dsr-requests-poison", tls_files)
    assert all(request_id not in str(m.content) for m in poison.peek_messages(max_messages=32))


def test_listing_filters_by_phase(host: HostProcess, e2e_graph: GraphSimulator):
    request_id = f"LIST-{uuid.uuid4().hex[:8].upper()}"
    host.post("/exports", {"requestId": request_id, "user": _new_user(e2e_graph)})
    host.wait_for(request_id, TERMINAL)
    completed = host.get("/exports?phase=completed&top=200")
    assert completed.status_code == 200
    ids = {item["requestId"] for item in completed.json()["items"]}
    assert request_id in ids
    failed = host.get("/exports?phase=failed&top=200").json()["items"]
    assert request_id not in {item["requestId"] for item in failed}
