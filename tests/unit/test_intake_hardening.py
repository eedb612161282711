"""Regression tests for what a hostile review of the intake found, one finding at a time.

Both faces run their real code with a fake durable client (see intake_fakes): a 500, a raised
queue message, a second DSR for the same ticket or a UPN in a document would show here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as WorkerQueueMessage

from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain.errors import classify
from dsr_export.domain.job import ExportJob
from tests.unit.intake_fakes import (
    T0,
    USER_ID,
    FakeDurableClient,
    ListSink,
    app_settings,
    body,
    call,
    intake_settings,
    request,
)

UPN = "adele.vance@contoso.example"


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with intake_settings():
        yield


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def post(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    """POST /api/exports with raw bytes or a JSON payload; extra keyword: request headers."""

    def send(payload: object, **kwargs: Any) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return call(
            user_function("submit_dsr"), client, req=request("POST", "exports", raw, **kwargs)
        )

    return send


def _pointers(response: Any) -> list[str]:
    return [error["pointer"] for error in body(response).get("errors", [])]


# -- bad dates: a 400 naming the field, never a 500 ---------------------------------------------
@pytest.mark.parametrize(
    "received_at",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "1900-01-01T00:00:00Z"],
)
def test_dates_at_the_calendar_edge_or_long_past_are_refused_by_name(post, client, received_at):
    payload = {
        "requestId": "R-1",
        "user": USER_ID,
        "receivedAt": received_at,
        "regulation": {"days": 1},
    }
    response = post(payload)
    assert response.status_code == 400
    assert _pointers(response) == ["/receivedAt"]
    assert client.started == []


def test_the_same_bad_date_on_the_queue_is_recorded_once_not_poisoned(client, user_function, swap):
    sink = ListSink()
    swap(rejections=sink)
    raw = json.dumps(
        {
            "requestId": "R-1",
            "user": UPN,
            "receivedAt": "0001-01-01T00:00:00Z",
            "regulation": {"days": 1},
        }
    ).encode()
    message = WorkerQueueMessage(id="m-1", body=raw, dequeue_count=1)
    asyncio.run(user_function("intake_dsr_message").client_function(msg=message, client=client))
    assert client.started == []
    assert [record["errors"][0]["pointer"] for record in sink.records] == ["/receivedAt"]
    assert UPN not in json.dumps(sink.records)  # the body (and its UPN) is not kept


# -- input that should not be accepted -----------------------------------------------------------
def test_a_key_given_twice_is_refused_whichever_person_it_names(post, client):
    raw = (
        b'{"requestId": "R-2", "user": "' + USER_ID.encode() + b'", "user": "eve@contoso.example"}'
    )
    response = post(raw)
    assert response.status_code == 400
    assert _pointers(response) == ["/user"]
    assert client.started == []


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_bodies_that_are_not_utf8_are_refused(post, client, encoding):
    raw = json.dumps({"requestId": "R-3", "user": USER_ID}).encode(encoding)
    assert post(raw).status_code == 400
    assert client.started == []


def test_a_utf8_byte_order_mark_is_tolerated(post, client):
    raw = b"\xef\xbb\xbf" + json.dumps({"requestId": "R-4", "user": USER_ID}).encode()
    assert post(raw).status_code == 202


@pytest.mark.parametrize(
    "user",
    [
        "ada\u0000@contoso.com",
        "ada\u007f@contoso.com",
        "ada\u200b@contoso.com",
        "ada\u202e@contoso.com",
        '"ada"@contoso.com',
        "ada@contoso.com\n",
        "ada@contoso\u2024com",
    ],
)
def test_upns_with_control_format_or_quote_characters_are_refused(post, client, user):
    response = post({"requestId": "R-5", "user": user})
    assert response.status_code == 400
    assert _pointers(response) == ["/user"]


def test_a_lone_surrogate_is_refused_where_it_stands(post, client):
    raw = b'{"requestId": "R-6", "user": "ad\\ud800a@contoso.com", "requestedBy": "x"}'
    response = post(raw)
    assert response.status_code == 400
    assert _pointers(response) == ["/user"]
    assert client.started == []


@pytest.mark.parametrize(
    "user", ["alice_contoso.com#EXT#@fabrikam.onmicrosoft.com", "o'brien@contoso.com"]
)
def test_real_upns_guests_included_are_accepted(post, client, user):
    assert post({"requestId": "R-7", "user": user}).status_code == 202
    assert ExportJob.from_input(client.started[0][2]).user == user


@pytest.mark.parametrize(
    "url",
    [
        "https://tickets.example.com\n.evil.example/cb",
        "https://tickets.example.com:8443/cb",
        "https://localhost\\.tickets.example.com/cb",
    ],
)
def test_callback_urls_with_a_newline_another_port_or_a_backslash_are_refused(post, url):
    response = post({"requestId": "R-8", "user": USER_ID, "callbackUrl": url})
    assert response.status_code == 400
    assert _pointers(response) == ["/callbackUrl"]


# -- the identity of a DSR -----------------------------------------------------------------------
def test_request_ids_differing_in_case_are_one_dsr(post, client):
    first = post({"requestId": "abc-1", "user": USER_ID})
    second = post({"requestId": "ABC-1", "user": USER_ID})
    assert (first.status_code, second.status_code) == (202, 202)
    assert [started[1] for started in client.started] == ["ABC-1"]
    assert body(first)["requestId"] == body(second)["requestId"] == "ABC-1"
    assert first.headers["Location"] == "/api/exports/ABC-1"


def test_a_dsr_started_before_ids_were_canonical_is_still_found_by_its_exact_id(
    post, client, user_function
):
    client.add("abc-legacy", input_={"requestId": "abc-legacy", "user": USER_ID})
    again = post({"requestId": "abc-legacy", "user": USER_ID})
    assert again.status_code == 202
    assert client.started == []
    req = request("GET", "exports/abc-legacy", route_params={"requestId": "abc-legacy"})
    assert call(user_function("get_dsr"), client, req=req).status_code == 200


def test_a_resubmission_with_other_values_is_a_conflict_naming_each_field(post, client):
    original = {
        "requestId": "R-9",
        "user": USER_ID,
        "callbackUrl": "https://tickets.example.com/cb",
        "regulation": "gdpr",
        "receivedAt": "2026-02-27T10:00:00+01:00",
    }
    assert post(original).status_code == 202
    changed = {
        **original,
        "callbackUrl": "https://tickets.example.com/other",
        "regulation": "ccpa",
        "receivedAt": "2026-02-27T09:00:00Z",  # the same instant, another local day: differs
    }
    response = post(changed)
    assert response.status_code == 409
    assert sorted(_pointers(response)) == ["/callbackUrl", "/receivedAt", "/regulation"]
    assert post(original).status_code == 202  # identical: the same answer as ever
    without_optional = {"requestId": "r-9", "user": USER_ID}  # fields not sent are not compared
    assert post(without_optional).status_code == 202
    assert len(client.started) == 1


# -- no personal data in what the ticket and the operator see -----------------------------------
def test_graphs_error_text_reaches_documents_without_the_upn():
    error = GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{UPN}' does not exist or one of its queried reference-property objects "
        "are not present.",
        graph_request_id="rid-1",
    )
    decided = classify(error, subject="user").error
    assert UPN not in json.dumps(decided)
    assert decided["code"] == "Request_ResourceNotFound"
    assert decided["graphRequestId"] == "rid-1"
    assert "<user>" in decided["message"]


# -- callers and roles ---------------------------------------------------------------------------
def _principal(roles: list[str], app_id: str = "servicenow-app") -> str:
    claims = [{"typ": "appid", "val": app_id}] + [{"typ": "roles", "val": r} for r in roles]
    return base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode()).decode()


@pytest.mark.parametrize(
    ("function", "method", "route", "payload", "role"),
    [
        ("submit_dsr", "POST", "exports", {"requestId": "R-10", "user": USER_ID}, "DSR.Submit"),
        ("list_dsrs", "GET", "exports", None, "DSR.Read"),
        ("get_dsr", "GET", "exports/R-10", None, "DSR.Read"),
        ("cancel_dsr", "POST", "exports/R-10/cancel", {"reason": "withdrawn"}, "DSR.Manage"),
    ],
)
def test_each_route_needs_its_role(
    client, user_function, entra_tokens, function, method, route, payload, role
):
    # Filed by the caller below (the local tenant's app): a submit again is a duplicate (F-12).
    app_id = "3f1d2c4b-5a69-4e7d-8c1b-2a3b4c5d6e7f"
    filed_by = {"kind": "application", "id": app_id}
    client.add("R-10", input_={"requestId": "R-10", "user": USER_ID, "submittedBy": filed_by})
    everything_else = [r for r in ("DSR.Submit", "DSR.Read", "DSR.Manage") if r != role]

    def send(roles: list[str]) -> Any:
        token = entra_tokens.mint(roles, subject_id=app_id)
        bearer = {"authorization": f"Bearer {token}"}
        req = request(method, route, payload, route_params={"requestId": "R-10"}, headers=bearer)
        return call(user_function(function), client, req=req)

    refused, allowed = send(everything_else), send([role])
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert role in body(refused)["detail"]
    assert allowed.status_code in {200, 202}


def test_the_authenticated_caller_is_the_submitter_not_the_bodys_requested_by(
    post, client, entra_tokens
):
    token = entra_tokens.mint(["DSR.Submit"], subject_id="sn-prod")
    response = post(
        {"requestId": "R-11", "user": USER_ID, "requestedBy": "someone else"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202
    job = ExportJob.from_input(client.started[0][2])
    assert job.submitted_by == {
        "kind": "application",
        "id": "sn-prod",
        "tenantId": entra_tokens.tenant_id,
    }
    assert job.requested_by == "someone else"


@pytest.mark.parametrize("platform_flag", ["", "True"])
def test_a_principal_header_is_never_taken_on_its_own_word(post, client, platform_flag):
    """Not even when WEBSITE_AUTH_ENABLED says App Service authentication is on."""
    forged = _principal(["DSR.Submit"], app_id="forged")
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Read", WEBSITE_AUTH_ENABLED=platform_flag):
        response = post(
            {"requestId": "R-12", "user": USER_ID}, headers={"x-ms-client-principal": forged}
        )
        alone = post(
            {"requestId": "R-12", "user": USER_ID},
            headers={"x-ms-client-principal": forged},
            key=None,
        )
    assert response.status_code == 403  # the key holder's own roles, not the header's
    assert alone.status_code == 401
    assert alone.mimetype == "application/problem+json"
    assert client.started == []


def test_no_token_and_no_key_is_unauthenticated(post, client):
    response = post({"requestId": "R-13", "user": USER_ID}, key=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- the evidence opens with the receipt -------------------------------------------------------
def test_a_started_dsr_has_its_receipt_in_the_evidence_first(post, client, evidence_log):
    response = post({"requestId": "r-20", "user": UPN, "regulation": "ccpa"})
    assert response.status_code == 202
    [record] = [json.loads(line) for line in evidence_log.read("R-20")]
    assert (record["kind"], record["seq"], record["requestId"]) == ("received", 0, "R-20")
    assert record["data"]["regulation"] == "ccpa"
    assert record["data"]["submitterKind"] == "functionKey"
    assert UPN not in json.dumps(record), "the UPN stays in the orchestration input"
    assert post({"requestId": "R-20", "user": UPN, "regulation": "ccpa"}).status_code == 202
    assert len(evidence_log.read("R-20")) == 1, "a duplicate delivery appends nothing"


def test_the_evidence_route_verifies_the_chain(post, client, user_function, evidence_log):
    post({"requestId": "R-21", "user": USER_ID})
    req = request("GET", "exports/r-21/evidence", route_params={"requestId": "r-21"})
    answer = body(call(user_function("get_evidence"), client, req=req))
    assert answer["verification"]["ok"] is True
    assert [r["kind"] for r in answer["records"]] == ["received"]
    missing = request("GET", "exports/R-404/evidence", route_params={"requestId": "R-404"})
    assert call(user_function("get_evidence"), client, req=missing).status_code == 404
