"""Contract tests of the HTTP intake: every endpoint, every refusal, idempotency and races.

The functions' own coroutines run with a fake durable client (see intake_fakes); everything
between the request and the client (validation, idempotency, documents, problems) is real.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from dsr_export.adapters.durable_client import InstanceGone
from dsr_export.domain.evidence import EVENT_ID, Kind
from tests.unit.intake_fakes import (
    OTHER_ID,
    T0,
    USER_ID,
    FakeDurableClient,
    app_settings,
    body,
    call,
    intake_settings,
    request,
    valid_payload,
)

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with intake_settings(DEADLINE_WARNING_DAYS="7"):
        yield


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def submit(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    """``POST /api/exports`` with a payload (bytes as they are, anything else as JSON)."""

    def post(payload: object, **kwargs: Any) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        req = request("POST", "exports", raw, **kwargs)
        return call(user_function("submit_dsr"), client, req=req)

    return post


def pointers(response) -> list[str]:
    return [e["pointer"] for e in body(response).get("errors", [])]


# -- POST /api/exports ------------------------------------------------------------------------
def test_submit_starts_one_export_and_points_at_its_status(submit, client):
    response = submit(
        valid_payload(callbackUrl="https://acme.service-now.com/api/x/dsr?ticket=1"),
    )
    assert response.status_code == 202
    assert response.headers["Location"] == "/api/exports/RITM0001"
    assert response.headers["Retry-After"] == "60"
    doc = body(response)
    assert doc["requestId"] == "RITM0001"
    assert doc["phase"] == "accepted"
    assert doc["deadline"] == "2026-04-01T09:00:00+00:00"  # GDPR: one month from now
    assert doc["daysLeft"] == 31
    assert doc["overdue"] is False
    assert USER_ID not in response.get_body().decode(), "no input in the status document"
    assert len(client.started) == 1
    name, instance_id, job = client.started[0]
    assert (name, instance_id) == ("export_personal_data", "RITM0001")
    assert job["legalDeadline"] == "2026-04-01T09:00:00+00:00"
    assert job["warningAt"] == "2026-03-25T09:00:00+00:00"
    assert job["callbackUrl"] == "https://acme.service-now.com/api/x/dsr?ticket=1"
    assert job["userId"] == USER_ID


def test_upn_is_passed_on_for_the_activity_to_resolve(submit, client):
    submit({"requestId": "R-2", "user": "ada@contoso.com"})
    job = client.started[0][2]
    assert job["user"] == "ada@contoso.com"
    assert "userId" not in job, "the starter never resolves; resolve_user does"


def test_ccpa_and_receipt_time_with_offset_set_the_deadline(submit, client):
    response = submit(
        valid_payload(regulation="ccpa", receivedAt="2026-02-20T23:30:00-05:00"),
    )
    assert body(response)["deadline"] == "2026-04-07T04:30:00+00:00"
    assert client.started[0][2]["regulation"] == "ccpa"
    assert client.started[0][2]["receivedAt"] == "2026-02-20T23:30:00-05:00"


def test_the_same_request_again_returns_the_existing_dsr_without_a_second_export(submit, client):
    first = submit(valid_payload())
    client.instances["RITM0001"]["runtime"] = "Running"
    client.instances["RITM0001"]["custom"] = {"phase": "exporting", "progress": 40}
    again = submit(valid_payload())
    assert first.status_code == 202
    assert again.status_code == 202
    assert again.headers["Location"] == "/api/exports/RITM0001"
    assert body(again)["phase"] == "exporting"
    assert body(again)["progress"] == 40
    assert body(again)["deadline"] == body(first)["deadline"]
    assert len(client.started) == 1


def test_a_finished_dsr_is_not_started_again(submit, client):
    client.add("RITM0001", runtime="Completed", output={"phase": "completed"})
    response = submit(valid_payload())
    assert response.status_code == 202
    assert body(response)["phase"] == "completed"
    assert "Retry-After" not in response.headers
    assert client.started == []


def test_the_same_id_for_another_user_is_a_conflict(submit, client):
    submit(valid_payload())
    response = submit({"requestId": "RITM0001", "user": OTHER_ID})
    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    assert pointers(response) == ["/requestId"]
    assert len(client.started) == 1


def test_a_submitter_without_read_learns_nothing_about_another_dsrs_subject(submit, client):
    """F-12: a DSR.Submit caller that did not file the DSR gets one and the same 409 whether it
    guessed the subject right or wrong (no field named, nothing started, no status)."""
    submit(valid_payload())  # filed by the ticketing system's key
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Submit"):
        right = submit(valid_payload(), key="another-submitters-key")
        wrong = submit({"requestId": "RITM0001", "user": OTHER_ID}, key="another-submitters-key")
        other_values = submit(valid_payload(regulation="ccpa"), key="another-submitters-key")
    assert right.status_code == wrong.status_code == other_values.status_code == 409
    assert right.get_body() == wrong.get_body() == other_values.get_body()
    assert pointers(right) == ["/requestId"]
    assert "user" not in body(right)["detail"]
    assert len(client.started) == 1


def test_the_dsrs_own_submitter_still_gets_the_duplicate_and_the_named_fields(submit, client):
    submit(valid_payload())
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Submit"):
        assert submit(valid_payload()).status_code == 202
        differing = submit(valid_payload(regulation="ccpa"))
    assert differing.status_code == 409
    assert pointers(differing) == ["/regulation"]


def test_a_reader_still_learns_which_field_differs(submit, client):
    submit(valid_payload())
    response = submit({"requestId": "RITM0001", "user": OTHER_ID}, key="a-readers-key")
    assert response.status_code == 409
    assert pointers(response) == ["/requestId"]
    assert "another user" in body(response)["detail"]


def test_a_resolved_upn_matches_its_object_id(submit, client):
    client.add("R-3", input_={"requestId": "R-3", "user": "ada@contoso.com", "userId": USER_ID})
    assert submit({"requestId": "R-3", "user": USER_ID}).status_code == 202
    assert submit({"requestId": "R-3", "user": "ADA@contoso.com"}).status_code == 202
    assert client.started == []


def test_losing_the_start_race_answers_like_a_duplicate(submit, client):
    client.race_with = {"requestId": "RITM0001", "user": USER_ID}
    response = submit(valid_payload())
    assert response.status_code == 202
    assert client.started == []


def test_losing_the_start_race_to_another_user_is_a_conflict(submit, client):
    client.race_with = {"requestId": "RITM0001", "user": OTHER_ID}
    response = submit(valid_payload())
    assert response.status_code == 409
    assert client.started == []


def test_every_invalid_field_is_named_at_once(submit, client):
    response = submit(
        {
            "requestId": "a b",
            "user": "not a user",
            "callbackUrl": "http://tickets.example.com/x",
            "receivedAt": "2026-01-31",
            "regulation": "hipaa",
            "requestedBy": 42,
        },
    )
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    problem = body(response)
    assert problem["status"] == 400
    assert problem["type"].endswith("#invalid-request")
    assert pointers(response) == [
        "/requestId",
        "/user",
        "/callbackUrl",
        "/receivedAt",
        "/regulation",
        "/requestedBy",
    ]
    assert client.started == []


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("http://tickets.example.com/cb", "https"),
        ("https://evil.example.net/cb", "allowlist"),
        ("https://169.254.169.254/metadata", "allowlist"),
        ("https://evilservice-now.com/cb", "allowlist"),
        ("https://user:pw@tickets.example.com/cb", "credentials"),
        ("https://tickets.example.com:99999/cb", "valid URL"),
        ("/relative/path", "https"),
    ],
)
def test_callback_urls_outside_the_allowlist_are_refused(submit, client, url, detail):
    response = submit(valid_payload(callbackUrl=url))
    assert response.status_code == 400
    assert pointers(response) == ["/callbackUrl"]
    assert detail in body(response)["errors"][0]["detail"]
    assert client.started == []


def test_callbacks_are_refused_when_no_signing_secret_is_configured(submit):
    with app_settings(CALLBACK_SIGNING_SECRET=""):
        response = submit(valid_payload(callbackUrl="https://tickets.example.com/cb"))
        assert response.status_code == 400
        assert "not enabled" in body(response)["errors"][0]["detail"]
        assert submit(valid_payload()).status_code == 202


def test_a_receipt_in_the_future_is_refused(submit):
    later = (T0 + timedelta(hours=1)).isoformat()
    response = submit(valid_payload(receivedAt=later))
    assert pointers(response) == ["/receivedAt"]


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b"[" * 5000, b"nan"])
def test_malformed_json_is_a_400(submit, client, raw):
    response = submit(raw)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert client.started == []


@pytest.mark.parametrize("payload", [[], "x", 1, None])
def test_a_body_that_is_not_an_object_is_a_400(submit, payload):
    response = submit(payload)
    assert response.status_code == 400
    assert pointers(response) == [""]


def test_a_large_body_is_a_413(submit, client):
    response = submit(valid_payload(note="x" * 20_000))
    assert response.status_code == 413
    assert response.mimetype == PROBLEM
    assert client.started == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_a_415(submit, client, content_type):
    response = submit(valid_payload(), content_type=content_type)
    assert response.status_code == 415
    assert response.mimetype == PROBLEM
    assert client.started == []


def test_a_charset_parameter_is_fine(submit):
    response = submit(valid_payload(), content_type="application/json; charset=utf-8")
    assert response.status_code == 202


def test_a_broken_setting_is_a_503_naming_it(submit, client):
    with app_settings(DEADLINE_WARNING_DAYS="soon"):
        response = submit(valid_payload())
    assert response.status_code == 503
    assert "DEADLINE_WARNING_DAYS" in body(response)["detail"]
    assert client.started == []


# -- GET /api/exports/{requestId} -------------------------------------------------------------
@pytest.fixture
def get(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    """``GET /api/exports/{requestId}``."""

    def status(request_id: str) -> Any:
        req = request("GET", f"exports/{request_id}", route_params={"requestId": request_id})
        return call(user_function("get_dsr"), client, req=req)

    return status


def test_status_document_shows_progress_deadline_and_never_the_input(get, client):
    client.add(
        "RITM0001",
        custom_status={
            "phase": "exporting",
            "graphStatus": "running",
            "progress": 55.0,
            "submittedAt": "2026-03-01T09:05:00+00:00",
            "deadline": "2026-03-05T09:00:00+00:00",
            "warningAt": "2026-02-26T09:00:00+00:00",
        },
        input_={"requestId": "RITM0001", "user": "ada@contoso.com", "callbackUrl": "https://x"},
    )
    response = get("RITM0001")
    assert response.status_code == 200
    doc = body(response)
    assert doc["phase"] == "exporting"
    assert (doc["graphStatus"], doc["progress"]) == ("running", 55.0)
    assert doc["submittedAt"] == "2026-03-01T09:05:00+00:00"
    assert (doc["daysLeft"], doc["deadlineWarning"], doc["overdue"]) == (4, True, False)
    text = response.get_body().decode()
    assert "ada@contoso.com" not in text
    assert "callbackUrl" not in text
    assert "statusQueryGetUri" not in text


def test_a_pending_dsr_takes_its_deadline_from_the_input(get, client):
    client.add(
        "R-9",
        runtime="Pending",
        input_={"requestId": "R-9", "user": USER_ID, "legalDeadline": "2026-02-28T09:00:00+00:00"},
    )
    doc = body(get("R-9"))
    assert doc["phase"] == "accepted"
    assert doc["overdue"] is True
    assert doc["daysLeft"] == -1


def test_a_finished_dsr_shows_its_manifest_and_no_running_clock(get, client):
    client.add(
        "R-4",
        runtime="Completed",
        output={
            "phase": "completed",
            "completedAt": "2026-03-20T10:00:00+00:00",
            "manifest": {"blobCount": 3, "totalBytes": 42, "products": {"Exchange": 3}},
            "deadline": "2026-02-01T00:00:00+00:00",
        },
    )
    doc = body(get("R-4"))
    assert doc["terminal"] is True
    assert doc["manifest"]["blobCount"] == 3
    assert (doc["overdue"], doc["daysLeft"]) == (False, None), "delivered: the clock stopped"


def test_a_failed_dsr_still_owes_an_answer(get, client):
    client.add(
        "R-5",
        runtime="Completed",
        output={
            "phase": "failed",
            "error": {"code": "Forbidden", "message": "grant User.Export.All"},
            "deadline": "2026-02-01T00:00:00+00:00",
        },
    )
    doc = body(get("R-5"))
    assert doc["error"]["code"] == "Forbidden"
    assert doc["overdue"] is True


def test_unknown_dsr_is_a_404(get):
    response = get("NOPE-1")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM


NOTICE_ID = "notice-0123456789abcdef0123456789abcdef"


def _notice(client: FakeDurableClient) -> None:
    """A notice orchestration (a ticket callback after an erasure or a delivery)."""
    client.add(
        NOTICE_ID,
        name="deliver_notice",
        runtime="Completed",
        input_={"requestId": "R-1", "url": "https://tickets.example.com/cb"},
        output={"phase": "completed"},
    )


def test_a_notice_orchestration_is_not_a_dsr(get, client):
    """I-3: ``notice-<32 hex>`` names a callback's orchestration, not a DSR: 404."""
    _notice(client)
    response = get(NOTICE_ID)
    assert response.status_code == 404
    assert response.mimetype == PROBLEM


def test_an_unusable_id_in_the_path_is_a_400(get):
    response = get("a b")
    assert response.status_code == 400
    assert pointers(response) == ["/requestId"]


# -- GET /api/exports --------------------------------------------------------------------------
@pytest.fixture
def list_(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    """``GET /api/exports`` with these query parameters."""

    def page(**params: str) -> Any:
        req = request("GET", "exports", params=params)
        return call(user_function("list_dsrs"), client, req=req)

    return page


def _fleet(client: FakeDurableClient) -> None:
    for n in range(5):
        due = (T0 + timedelta(days=n - 2, hours=1)).isoformat()  # overdue
        client.add(
            f"R-{n}",
            custom_status={"phase": "exporting", "deadline": due},
            created=T0 - timedelta(days=30 - n),
        )
    client.add("R-done", runtime="Completed", output={"phase": "completed"}, created=T0)


def test_list_pages_oldest_first_with_a_continuation_token(list_, client):
    _fleet(client)
    seen, token, pages = [], None, 0
    while True:
        params = {"top": "2", **({"continuationToken": token} if token else {})}
        page = body(list_(**params))
        seen += [item["requestId"] for item in page["items"]]
        pages += 1
        token = page["continuationToken"]
        if token is None:
            break
    assert seen == ["R-0", "R-1", "R-2", "R-3", "R-4", "R-done"]
    assert pages == 3


def test_list_queries_a_bounded_window_of_the_task_hub(list_, client):
    _fleet(client)
    client.add("R-ancient", custom_status={"phase": "exporting"}, created=T0 - timedelta(days=401))
    listed = [item["requestId"] for item in body(list_(top="200"))["items"]]
    assert "R-ancient" not in listed
    assert len(listed) == 6
    [(created_from, created_to, statuses)] = client.queries
    assert (created_from, created_to, statuses) == (T0 - timedelta(days=400), T0, ())
    body(list_(phase="completed"))
    assert client.queries[-1][2] == ("Canceled", "Completed", "Failed", "Terminated")


def _crowd(client: FakeDurableClient, count: int, seed: int = 7) -> list[str]:
    """``count`` DSRs whose ids are not in created order (the query answers in id order);
    some share a created time. Returns the ids oldest first (the list's order)."""
    rng = random.Random(seed)  # noqa: S311 - a test fleet, not a secret
    made = []
    for n in range(count):
        request_id = f"D-{rng.randrange(16**8):08x}-{n}"
        created = T0 - timedelta(days=300) + timedelta(minutes=rng.randrange(count * 10) // 3)
        phase = rng.choice(["exporting", "exporting", "submitting"])
        due = (T0 + timedelta(days=rng.randrange(-5, 20))).isoformat()
        client.add(request_id, custom_status={"phase": phase, "deadline": due}, created=created)
        made.append((created.isoformat(), request_id))
    return [request_id for _, request_id in sorted(made)]


def test_the_list_reads_a_few_pages_for_a_short_answer_however_many_dsrs(list_, client):
    """F-13: ``?top=1`` read every instance of its 400-day window on every call. Now the pages
    read stay a handful at 1,000 DSRs (the task hub query answers in id order, as Azure
    Storage's does, so no prefix of it is the oldest)."""
    oldest = _crowd(client, 1000)
    page = body(list_(top="1"))
    assert [item["requestId"] for item in page["items"]] == oldest[:1]
    assert page["continuationToken"] is not None
    assert client.pages_read <= 6, client.pages_read
    assert client.statuses_read <= 500, client.statuses_read
    client.pages_read = client.statuses_read = 0
    page = body(list_(top="20", continuationToken=page["continuationToken"]))
    assert [item["requestId"] for item in page["items"]] == oldest[1:21]
    assert client.statuses_read <= 500, client.statuses_read


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("top", "params"),
    [("3", {}), ("7", {"overdue": "true"}), ("30", {"phase": "submitting"}), ("200", {})],
)
def test_paging_the_list_gives_every_dsr_once_in_order(list_, client, seed, top, params):
    """The narrowed reads answer exactly what sorting the whole window would."""
    _crowd(client, 260, seed)
    _notice(client)
    everything = body(list_(top="200", **params))
    seen, token = [], None
    for _ in range(500):
        page = body(list_(top=top, **params, **({"continuationToken": token} if token else {})))
        seen += [item["requestId"] for item in page["items"]]
        token = page["continuationToken"]
        if token is None:
            break
    brute = _brute_force(client, params)
    assert seen == brute
    assert [item["requestId"] for item in everything["items"]] == brute[:200]


def _brute_force(client: FakeDurableClient, params: dict[str, str]) -> list[str]:
    """The list's answer the slow way: every instance, its document, sorted by created time."""
    from intake.service import document

    rows = []
    for instance_id in client.instances:
        status = client._status(instance_id, False)
        if status.name != "export_personal_data":
            continue
        doc = document(status, T0)
        if "phase" in params and doc.phase != params["phase"]:
            continue
        if "overdue" in params and doc.overdue is not (params["overdue"] == "true"):
            continue
        rows.append((status.created_time.isoformat(), instance_id))
    return [instance_id for _, instance_id in sorted(rows)]


def test_list_filters_by_phase_and_overdue(list_, client):
    _fleet(client)
    overdue = body(list_(overdue="true"))["items"]
    assert [i["requestId"] for i in overdue] == ["R-0", "R-1"]
    done = body(list_(phase="completed"))["items"]
    assert [i["requestId"] for i in done] == ["R-done"]
    on_time = body(list_(phase="exporting", overdue="false"))["items"]
    assert [i["requestId"] for i in on_time] == ["R-2", "R-3", "R-4"]


def test_the_list_holds_no_notice_orchestration(list_, client):
    _fleet(client)
    _notice(client)
    listed = [item["requestId"] for item in body(list_(top="200"))["items"]]
    assert NOTICE_ID not in listed
    assert len(listed) == 6


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"phase": "lost"}, "/phase"),
        ({"overdue": "maybe"}, "/overdue"),
        ({"top": "0"}, "/top"),
        ({"top": "201"}, "/top"),
        ({"top": "ten"}, "/top"),
        ({"continuationToken": "%%%"}, "/continuationToken"),
        ({"continuationToken": "WzFd"}, "/continuationToken"),  # [1]
    ],
)
def test_list_refuses_bad_parameters(list_, params, pointer):
    response = list_(**params)
    assert response.status_code == 400
    assert pointers(response) == [pointer]


# -- POST /api/exports/{requestId}/cancel ------------------------------------------------------
@pytest.fixture
def cancel(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    """``POST /api/exports/{requestId}/cancel`` with a payload (bytes as they are, else JSON)."""

    def post(request_id: str, payload: object, **kwargs: Any) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        route = {"requestId": request_id}
        req = request("POST", f"exports/{request_id}/cancel", raw, route_params=route, **kwargs)
        return call(user_function("cancel_dsr"), client, req=req)

    return post


def test_cancel_sends_the_reasons_code_and_hash_never_its_words(cancel, client):
    """F-7: the orchestration (and so the status and the list) gets no text of the reason."""
    client.add("R-1", custom_status={"phase": "exporting"})
    reason = "Jane Doe, +44 7700 900123, jane%40contoso.com"
    response = cancel("R-1", {"reason": reason, "reasonCode": "withdrawn"})
    assert response.status_code == 202
    assert response.headers["Location"] == "/api/exports/R-1"
    digest = hashlib.sha256(reason.encode()).hexdigest()
    assert client.events == [("R-1", "cancel", {"reasonCode": "withdrawn", "reasonSha256": digest})]
    cancel("R-1", {"reason": "no code given"})
    assert client.events[-1][2]["reasonCode"] == "other"


@pytest.mark.parametrize(
    "reason",
    [
        "Jane Doe called on +44 7700 900123",
        "jane%40contoso.com",
        "jane\uff20contoso.com",
        "line one\r\n\x1b[31mforged",
    ],
)
def test_status_and_list_show_a_cancel_reasons_code_and_hash_never_its_text(
    get, list_, client, reason
):
    """F-7: whatever the task hub holds (also an output written before this fix), the status
    and the list show the reason's code and SHA-256, never the words."""
    client.add(
        "R-C",
        runtime="Completed",
        output={"phase": "cancelled", "error": {"code": "Cancelled", "message": reason}},
    )
    digest = hashlib.sha256(reason.encode()).hexdigest()
    expected = {
        "code": "Cancelled",
        "message": "cancelled on request",
        "reasonCode": "other",
        "reasonSha256": digest,
    }
    status = get("R-C")
    [listed] = body(list_())["items"]
    for response_body, doc in ((status.get_body(), body(status)), (None, listed)):
        assert doc["error"] == expected
        if response_body is not None:
            assert reason.encode() not in response_body
            assert b"Jane" not in response_body


def test_cancel_refuses_an_unknown_reason_code(cancel, client):
    client.add("R-1")
    response = cancel("R-1", {"reason": "x", "reasonCode": "because"})
    assert response.status_code == 400
    assert pointers(response) == ["/reasonCode"]
    assert client.events == []


def test_cancel_of_a_dsr_not_started_yet_is_accepted(cancel, client):
    client.add("R-1", runtime="Pending")
    assert cancel("R-1", {"reason": "duplicate ticket"}).status_code == 202


@pytest.mark.parametrize("payload", [{}, {"reason": ""}, {"reason": "  "}, {"reason": 3}, []])
def test_cancel_needs_a_reason(cancel, client, payload):
    client.add("R-1")
    response = cancel("R-1", payload)
    assert response.status_code == 400
    assert pointers(response) == ["/reason"]
    assert client.events == []


def test_cancel_of_an_unknown_dsr_is_a_404(cancel):
    assert cancel("R-404", {"reason": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("runtime", "phase"),
    [
        ("Completed", "completed"),
        ("Completed", "failed"),
        ("Terminated", None),
        ("Running", "finalizing"),
    ],
)
def test_cancel_of_a_finished_dsr_is_a_409(cancel, client, runtime, phase):
    client.add("R-1", runtime=runtime, custom_status={"phase": phase} if phase else None)
    response = cancel("R-1", {"reason": "x"})
    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    assert client.events == []


def test_cancel_racing_the_end_is_a_409(cancel, client):
    client.add("R-1")

    async def gone(*_args, **_kwargs):
        raise InstanceGone("Instance with ID R-1 is gone: either completed or failed")

    client.raise_event = gone
    assert cancel("R-1", {"reason": "x"}).status_code == 409


def test_cancel_refuses_wrong_media_and_size(cancel, client):
    client.add("R-1")
    assert cancel("R-1", {"reason": "x"}, content_type="text/plain").status_code == 415
    assert cancel("R-1", {"reason": "x" * 20_000}).status_code == 413


# -- GET /api/openapi.json ---------------------------------------------------------------------
def test_the_api_document_is_served(user_function):
    response = user_function("openapi_document")(req=request("GET", "openapi.json"))
    assert response.status_code == 200
    assert body(response)["openapi"].startswith("3.1")


def test_an_id_whose_history_was_purged_is_never_started_again(submit, client, evidence_log):
    """F-4: the task hub forgot the DSR, its evidence did not: a 409 naming how the earlier DSR
    ended and its receipt, no second export into the same container."""
    evidence_log.append("RITM0001", Kind.RECEIVED, T0 - timedelta(days=200), {EVENT_ID: "received"})
    evidence_log.append(
        "RITM0001", Kind.COMPLETED, T0 - timedelta(days=199), {EVENT_ID: "completed"}
    )
    evidence_log.append(
        "RITM0001",
        Kind.RETENTION_DELETED,
        T0 - timedelta(days=169),
        {EVENT_ID: "rcpt_1", "receiptId": "rcpt_1"},
    )
    evidence_log.append(
        "RITM0001", Kind.HISTORY_PURGED, T0 - timedelta(days=109), {"retentionDays": 90}
    )
    before = len(evidence_log.records["RITM0001"])
    response = submit(valid_payload())
    assert response.status_code == 409, body(response)
    problem = body(response)
    assert "completed" in problem["detail"]
    assert "rcpt_1" in problem["detail"]
    assert USER_ID not in response.get_body().decode()
    assert client.started == []
    assert len(evidence_log.records["RITM0001"]) == before, "nothing appended"


def test_an_id_with_only_its_receipt_recorded_still_starts(submit, client, evidence_log):
    """A delivery that recorded ``received`` and died before the start is retried: it starts."""
    evidence_log.append("RITM0001", Kind.RECEIVED, T0, {EVENT_ID: "received"})
    response = submit(valid_payload())
    assert response.status_code == 202, body(response)
    assert len(client.started) == 1


def test_a_duplicate_racing_a_dsr_that_already_wrote_evidence_is_a_duplicate(
    submit, client, evidence_log, monkeypatch
):
    """The first look finds no instance; by the evidence read a concurrent duplicate started
    the DSR and it recorded more than its receipt: a duplicate (202), not an earlier DSR."""
    from intake import service

    evidence_log.append("RITM0001", Kind.RECEIVED, T0, {EVENT_ID: "received"})
    evidence_log.append("RITM0001", Kind.SUBMITTED, T0, {EVENT_ID: "submitted:c"})
    read = service.evidence_records

    def racing(request_id: str):
        client.add("RITM0001", runtime="Running", custom_status={"phase": "exporting"})
        return read(request_id)

    monkeypatch.setattr(service, "evidence_records", racing)
    response = submit(valid_payload())
    assert response.status_code == 202, body(response)
    assert body(response)["phase"] == "exporting"
    assert client.started == []


def test_the_packages_language_is_carried_in_the_dsr(submit, client):
    assert submit(valid_payload(language="DE")).status_code == 202
    assert client.started[0][2]["language"] == "de"


def test_a_language_without_a_catalogue_is_a_400_naming_the_field(submit, client):
    answer = submit(valid_payload(language="fr"))
    assert answer.status_code == 400
    assert pointers(answer) == ["/language"]
    assert client.started == []
