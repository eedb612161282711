"""The lifecycle routes' refusals and the retention run's decisions, against the fake task hub
and the in-memory evidence: each action only in the state it needs, and nothing early."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from dsr_export.adapters.storage import DeletedData
from dsr_export.domain import lifecycle
from dsr_export.domain.evidence import Kind
from intake import http_api, retention
from tests.unit.intake_fakes import (
    T0,
    USER_ID,
    FakeDurableClient,
    MemoryEvidence,
    QueueTrimmings,
    app_settings,
    body,
    call,
    intake_settings,
    request,
)


class FakeStorage:
    """The export account's deletions, counted."""

    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}
        self.deleted: list[str] = []

    def delete_data(self, request_id: str) -> DeletedData:
        containers = tuple(self.held.pop(request_id, []))
        self.deleted += containers
        return DeletedData(containers, len(containers) * 3, len(containers) * 300, "a" * 64)

    def has_data(self, name: str) -> bool:
        return any(name in names for names in self.held.values())


@pytest.fixture
def storage(swap: Callable[..., None]) -> FakeStorage:
    fake = FakeStorage()
    swap(export_storage=fake, clock=lambda: T0)
    return fake


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    with intake_settings():
        yield


def _route(
    user_function, name: str, client: FakeDurableClient, method: str, path: str, payload=None
):
    req = request(method, path, payload, route_params={"requestId": "R-1"})
    return call(user_function(name), client, req=req)


def _ended(phase: str, *, ended_at=T0, **extra: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "requestId": "R-1",
        "container": "dsr-r-1-abc",
        "completedAt": ended_at.isoformat(),
        "deadline": (T0 + timedelta(days=30)).isoformat(),
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "method", "path", "payload", "runtime", "phase", "says"),
    [
        (
            "download_export",
            "POST",
            "exports/R-1/download",
            None,
            "Running",
            "exporting",
            "completed",
        ),
        (
            "extend_deadline",
            "POST",
            "exports/R-1/extend",
            {"reason": "x", "days": 3},
            "Completed",
            "failed",
            "retry it first",
        ),
        (
            "retry_dsr",
            "POST",
            "exports/R-1/retry",
            {"reason": "x"},
            "Completed",
            "completed",
            "failed or timed-out",
        ),
        (
            "erase_data",
            "DELETE",
            "exports/R-1/data",
            {"reason": "x"},
            "Running",
            "exporting",
            "cancel it first",
        ),
    ],
)
def test_each_action_is_refused_in_the_wrong_state_saying_what_to_do(
    user_function, storage, name, method, path, payload, runtime, phase, says
):
    client = FakeDurableClient()
    state = _ended(phase) if runtime == "Completed" else {"phase": phase, "requestId": "R-1"}
    client.add(
        "R-1",
        runtime=runtime,
        custom_status=state,
        output=state if runtime == "Completed" else None,
    )
    answer = _route(user_function, name, client, method, path, payload)
    assert answer.status_code == 409, body(answer)
    assert says in body(answer)["detail"]
    assert client.started == [], "nothing started"
    assert storage.deleted == [], "nothing deleted"


@pytest.mark.parametrize(
    ("payload", "pointer"),
    [
        ({"days": 3}, "/reason"),
        ({"reason": "x"}, "/days"),
        ({"reason": "x", "days": 3, "months": 1}, "/days"),
        ({"reason": "x", "months": 3}, "/months"),
    ],
)
def test_an_extension_the_law_does_not_allow_is_refused_naming_the_field(
    user_function, storage, payload, pointer
):
    client = FakeDurableClient()
    job = {
        "requestId": "R-1",
        "user": USER_ID,
        "receivedAt": T0.isoformat(),
        "regulation": "gdpr",
        "legalDeadline": (T0 + timedelta(days=31)).isoformat(),
        "warningAt": (T0 + timedelta(days=24)).isoformat(),
    }
    client.add("R-1", custom_status={"phase": "exporting"}, input_=job)
    answer = _route(user_function, "extend_deadline", client, "POST", "exports/R-1/extend", payload)
    assert answer.status_code == 400, body(answer)
    assert body(answer)["errors"][0]["pointer"] == pointer
    assert client.events == [], "nothing raised to the DSR"


def test_an_extension_is_recorded_and_answered_pending_with_its_ask_id(
    user_function, storage, evidence_log: MemoryEvidence
):
    """F-1: the API cannot know the deadline an ask gives (asks sent at once are applied in
    turn): it records the ask, announces it, and says "accepted, pending"."""
    client = FakeDurableClient()
    job = {
        "requestId": "R-1",
        "user": USER_ID,
        "receivedAt": T0.isoformat(),
        "regulation": "gdpr",
        "legalDeadline": (T0 + timedelta(days=31)).isoformat(),
        "warningAt": (T0 + timedelta(days=24)).isoformat(),
    }
    client.add("R-1", custom_status={"phase": "exporting"}, input_=job)
    payload = {"reason": "many systems", "days": 1, "reasonCode": "complexity"}
    first = _route(user_function, "extend_deadline", client, "POST", "exports/R-1/extend", payload)
    again = _route(user_function, "extend_deadline", client, "POST", "exports/R-1/extend", payload)
    assert (first.status_code, again.status_code) == (202, 202), body(first)
    answer = body(first)
    assert (answer["state"], answer["asked"], answer["statusUrl"]) == (
        "pending",
        {"days": 1},
        "/api/exports/R-1",
    )
    assert "deadline" not in answer, "not a deadline the API cannot know yet"
    schemas = json.loads(http_api.OPENAPI_PATH.read_text(encoding="utf-8"))["components"]
    Draft202012Validator(schemas["schemas"]["ExtensionAsked"]).validate(answer)
    asked = [r for r in evidence_log.records["R-1"] if r.kind is Kind.EXTENSION_ASKED]
    assert [r.data["askId"] for r in asked] == [answer["askId"], body(again)["askId"]]
    assert asked[0].data["askId"] != asked[1].data["askId"], "each ask its own id"
    assert asked[0].data["reasonSha256"] != "many systems"
    assert [event[2] for event in client.events] == [
        {"askId": answer["askId"]},
        {"askId": body(again)["askId"]},
    ], "the event only announces the ask"


def test_an_erasure_answers_the_receipt_once_and_records_it(
    user_function, storage, evidence_log: MemoryEvidence
):
    client = FakeDurableClient()
    client.add(
        "R-1", runtime="Completed", custom_status=_ended("completed"), output=_ended("completed")
    )
    storage.held["R-1"] = ["dsr-r-1-abc"]
    first = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "Ada asked"}
    )
    assert first.status_code == 200, body(first)
    receipt = body(first)
    assert receipt["reason"] == "erasure_request"
    assert receipt["receiptId"] == lifecycle.receipt_id("R-1", ["dsr-r-1-abc"])
    [record] = [r for r in evidence_log.records["R-1"] if r.kind is Kind.ERASED]
    assert "Ada" not in record.to_line().decode(), "the reason is kept as its hash"
    again = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "again"}
    )
    assert again.status_code == 409
    assert receipt["receiptId"] in body(again)["detail"]


def _run(client: FakeDurableClient, now) -> retention.RunCounts:
    return asyncio.run(retention.sweep(client, now))


def test_retention_deletes_only_what_is_due_and_purges_only_complete_evidence(
    storage, evidence_log: MemoryEvidence
):
    client = FakeDurableClient()
    purged: list[str] = []

    async def purge(instance_id: str) -> int:
        purged.append(instance_id)
        client.instances.pop(instance_id, None)
        return 1

    client.purge = purge  # type: ignore[method-assign]
    for request_id, days_ago in (("OLD", 100), ("MID", 40), ("NEW", 10)):
        ended = T0 - timedelta(days=days_ago)
        client.add(
            request_id,
            runtime="Completed",
            output=_ended("completed", ended_at=ended),
            created=ended,
        )
        storage.held[request_id] = [f"dsr-{request_id.lower()}-abc"]
    evidence_log.append("OLD", Kind.RECEIVED, T0 - timedelta(days=101), {"source": "http"})
    evidence_log.append("OLD", Kind.COMPLETED, T0 - timedelta(days=100), {"blobCount": 1})
    evidence_log.append("OLD", Kind.SAS_REVOKED, T0 - timedelta(days=100), {"revoked": True})
    evidence_log.append("MID", Kind.RECEIVED, T0 - timedelta(days=41), {"source": "http"})

    counts = _run(client, T0)
    assert sorted(storage.deleted) == ["dsr-mid-abc", "dsr-old-abc"], "NEW is not due yet"
    assert purged == ["OLD"], "MID's history is younger than 90 days"
    assert (counts.due, counts.deleted, counts.purged, counts.failed) == (2, 2, 1, 0)
    kinds = [r.kind for r in evidence_log.records["OLD"]]
    assert kinds[-2:] == [Kind.RETENTION_DELETED, Kind.HISTORY_PURGED], (
        "the record before the purge"
    )

    # A second run the same day deletes nothing twice and writes no second receipt.
    again = _run(client, T0)
    assert (again.deleted, again.purged) == (0, 0)
    assert [r.kind for r in evidence_log.records["MID"]].count(Kind.RETENTION_DELETED) == 1


def test_the_retention_run_handles_a_page_before_reading_the_next(storage):
    """F-13: the run read every instance of its window before handling any; now it handles
    each page of the task hub query as it comes, over the instances that can be due."""
    client = FakeDurableClient()
    seen: list[str] = []
    real_pages = client.query_pages

    async def pages(**query: Any) -> Any:
        async for page in real_pages(**query):
            seen.append("page")
            yield page

    client.query_pages = pages  # type: ignore[method-assign]
    real_delete = storage.delete_data

    def delete(request_id: str) -> DeletedData:
        seen.append("delete")
        deleted: DeletedData = real_delete(request_id)
        return deleted

    storage.delete_data = delete
    for n in range(250):
        ended = T0 - timedelta(days=40, minutes=n)
        request_id = f"R-{n:03d}"
        client.add(
            request_id,
            runtime="Completed",
            output=_ended("completed", ended_at=ended),
            created=ended,
        )
        storage.held[request_id] = [f"dsr-r-{n:03d}-abc"]
    counts = _run(client, T0)
    assert counts.deleted == 250
    assert seen.count("page") == 3
    assert seen.index("delete") < seen.index("page", 1), "the first page handled first"
    [(_, created_to, _)] = client.queries
    assert created_to == T0 - timedelta(days=30), "none created since can be due"


def test_a_dsr_whose_output_says_it_ended_is_purged_even_with_short_evidence(
    storage, evidence_log: MemoryEvidence
):
    """F-3: a DSR that failed before it had a container never wrote ``finished``; its
    history (which holds the UPN) is purged all the same, and the record says why."""
    client = FakeDurableClient()
    purged: list[str] = []

    async def purge(instance_id: str) -> int:
        purged.append(instance_id)
        client.instances.pop(instance_id, None)
        return 1

    client.purge = purge  # type: ignore[method-assign]
    ended = T0 - timedelta(days=100)
    output = _ended("failed", ended_at=ended, error={"code": "UserNotFound"})
    client.add("GAP", runtime="Completed", output=output, created=ended)
    evidence_log.append("GAP", Kind.RECEIVED, ended, {"source": "http"})
    client.add("ODD", runtime="Terminated", output="stopped by hand", created=ended)

    counts = _run(client, T0)
    assert purged == ["GAP"], "no output's word for ODD: kept, tried again next run"
    assert (counts.purged, counts.skipped) == (1, 1)
    record = evidence_log.records["GAP"][-1]
    assert record.kind is Kind.HISTORY_PURGED
    assert record.data["evidence"] is False
    assert (record.data["endedPhase"], record.data["errorCode"]) == ("failed", "UserNotFound")
    document = lifecycle.purged_status(evidence_log.records["GAP"])
    assert document is not None
    shown = document.to_wire()
    assert (shown["phase"], shown["error"]) == ("failed", {"code": "UserNotFound"})
    assert shown["completedAt"] == ended.isoformat()


def test_the_retention_settings_refuse_a_history_purged_before_its_data():
    from dsr_export.settings import LifecycleSettings, SettingsError

    with pytest.raises(SettingsError, match="HISTORY_RETENTION_DAYS"):
        LifecycleSettings.from_env({"EXPORT_RETENTION_DAYS": "30", "HISTORY_RETENTION_DAYS": "7"})
    with app_settings(DOWNLOAD_LINK_MINUTES="1441"), pytest.raises(SettingsError):
        LifecycleSettings.from_env()


def test_an_erasure_whose_ticket_callback_cannot_be_queued_still_answers_its_receipt(
    user_function, storage, evidence_log: MemoryEvidence, caplog
):
    class Unqueueable(FakeDurableClient):
        async def start(self, name: str, instance_id: str, payload: Any) -> bool:
            raise ConnectionError("The task hub is unavailable")

    client = Unqueueable()
    ended = _ended("completed")
    job = {"requestId": "R-1", "user": USER_ID, "callbackUrl": "https://acme.service-now.com/cb"}
    client.add("R-1", runtime="Completed", custom_status=ended, output=ended, input_=job)
    storage.held["R-1"] = ["dsr-r-1-abc"]
    answer = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "x"}
    )
    assert answer.status_code == 200, body(answer)
    assert [r.kind for r in evidence_log.records["R-1"]] == [Kind.ERASED]
    assert any("callback_queue_failed" in r.getMessage() for r in caplog.records)


def test_the_retention_run_clears_old_poisoned_and_rejected_messages(
    storage, queue_trimmer: QueueTrimmings, caplog: pytest.LogCaptureFixture
):
    """I-2: a poisoned request keeps its whole body (a UPN) for the queue's seven days, a
    rejection record 30: the run deletes both after QUEUE_RETENTION_DAYS, counted in its line."""
    queue_trimmer.cleared = {"dsr-requests-poison": 2, "dsr-requests-rejected": 5}
    with caplog.at_level(logging.INFO), app_settings(QUEUE_RETENTION_DAYS="4"):
        counts = _run(FakeDurableClient(), T0)
    cutoff = T0 - timedelta(days=4)
    assert queue_trimmer.calls == [
        ("dsr-requests-poison", cutoff),
        ("dsr-requests-rejected", cutoff),
    ]
    assert (counts.poison_cleared, counts.rejected_cleared, counts.failed) == (2, 5, 0)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention_run")]
    assert "poison_cleared=2 rejected_cleared=5" in line


def test_a_queue_that_cannot_be_cleared_is_counted_and_the_other_still_is(
    storage, queue_trimmer: QueueTrimmings, caplog: pytest.LogCaptureFixture
):
    queue_trimmer.fail = {"dsr-requests-poison"}
    queue_trimmer.cleared = {"dsr-requests-rejected": 1}
    with caplog.at_level(logging.INFO):
        counts = _run(FakeDurableClient(), T0)
    assert (counts.failed, counts.rejected_cleared) == (1, 1)
    assert queue_trimmer.calls[0][1] == T0 - timedelta(days=3), "the default: three days"
    assert any(
        r.getMessage() == "queue_retention_failed queue=dsr-requests-poison reason=ConnectionError"
        for r in caplog.records
    )
