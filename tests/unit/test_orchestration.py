"""The export orchestration, replayed through the SDK's real entry point."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsr_export.job import ExportJob
from dsr_export.settings import ExportPolicy
from tests.replay import Driver

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
OP_URL = "https://graph.microsoft.com/beta/dataPolicyOperations/op-1"


def _driver(**policy: int) -> Driver:
    job = ExportJob(
        request_id="RITM0001", user=USER_ID, user_id=USER_ID, policy=ExportPolicy(**policy)
    )
    return Driver("export_personal_data", job.to_input())


def _accepted(retry_after: int = 60) -> dict[str, object]:
    return {
        "outcome": "accepted",
        "operationId": "op-1",
        "operationUrl": OP_URL,
        "retryAfterSeconds": retry_after,
        "submittedAt": "2026-03-01T09:00:30+00:00",
        "sasExpiresAt": "2026-04-30T09:00:00+00:00",
    }


def _through_submit(d: Driver, retry_after: int = 60) -> dict[str, Any]:
    d.episode()
    d.complete(
        {"container": "dsr-ritm0001-x", "requestInfoExists": False, "settleSeconds": 30},
        name="prepare_container",
    )
    d.fire_timer()  # the stored access policy settles
    return d.complete(_accepted(retry_after), name="submit_export")


def _running(progress: float = 10.0) -> dict[str, object]:
    return {"outcome": "ok", "status": "running", "progress": progress, "completedAt": None}


def test_first_episode_prepares_the_container():
    d = _driver()
    reply = d.episode()
    assert [a.name for a in d.actions] == ["prepare_container"]
    assert d.actions[0].input == {"requestId": "RITM0001"}
    assert reply["customStatus"]["phase"] == "preparing_storage"
    assert reply["isDone"] is False


def test_upn_is_resolved_before_anything_touches_storage():
    job = ExportJob(request_id="R-2", user="ada@contoso.com")
    d = Driver("export_personal_data", job.to_input())
    reply = d.episode()
    assert [a.name for a in d.actions] == ["resolve_user"]
    assert reply["customStatus"]["phase"] == "resolving_user"
    d.complete({"outcome": "ok", "userId": USER_ID})
    assert d.actions[-1].name == "prepare_container"


def test_first_poll_waits_the_submit_retry_after_on_the_replay_clock():
    d = _driver()
    reply = _through_submit(d, retry_after=120)
    timer = d.pending()
    assert timer.kind == "timer"
    assert timer.fire_at == d.now + timedelta(seconds=120)
    assert reply["customStatus"]["phase"] == "exporting"
    assert reply["customStatus"]["operationId"] == "op-1"


def test_poll_back_off_doubles_up_to_the_cap():
    d = _driver(max_poll_interval_seconds=600)
    _through_submit(d, retry_after=60)
    waits = []
    for _ in range(6):
        timer = d.pending()
        waits.append(int((timer.fire_at - d.now).total_seconds()))
        d.fire_timer()
        d.complete(_running(), name="check_export")
    assert waits == [60, 120, 240, 480, 600, 600]


def test_graph_retry_after_is_respected_even_above_the_cap():
    d = _driver(max_poll_interval_seconds=600)
    _through_submit(d)
    d.fire_timer()
    d.complete({"outcome": "retry", "retryAfterSeconds": 900, "error": {"code": "TooManyRequests"}})
    timer = d.pending()
    assert timer.fire_at - d.now == timedelta(seconds=900)


def test_continue_as_new_after_n_rounds_keeps_the_state():
    d = _driver(rounds_per_history=3)
    _through_submit(d)
    for progress in (10.0, 20.0, 30.0):
        d.fire_timer()
        reply = d.complete(_running(progress), name="check_export")
    assert d.actions[-1].kind == "continue_as_new"
    carried = ExportJob.from_input(d.actions[-1].input)
    assert carried.operation_id == "op-1"
    assert carried.operation_url == OP_URL
    assert carried.poll_round == 3
    assert carried.progress == 30.0
    assert carried.wait_seconds == 480
    assert carried.started_at == "2026-03-01T09:00:00+00:00"
    assert carried.policy.rounds_per_history == 3
    assert reply.get("output") is None, "continue_as_new is not a terminal result"

    reply = d.continue_as_new()
    assert [e["EventType"] for e in d.history] == [12, 0, 10], "fresh history: only the timer"
    timer = d.pending()
    assert timer.kind == "timer"
    assert timer.fire_at - d.now == timedelta(seconds=480)
    assert not [a for a in d.actions if a.kind == "activity"], "no second submit"


def test_complete_writes_manifest_and_revokes():
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete({"outcome": "ok", "status": "complete", "progress": 100, "completedAt": None})
    finalize = d.pending()
    assert finalize.name == "finalize_export"
    assert finalize.input["writeManifest"] is True
    manifest = {"blobCount": 3, "totalBytes": 42, "products": {"Exchange": 3}}
    reply = d.complete({"manifest": manifest, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "completed"
    assert reply["output"]["manifest"] == manifest
    assert reply["output"]["sas"]["revoked"] is True
    assert reply["customStatus"]["phase"] == "completed"


@pytest.mark.parametrize(
    ("graph_status", "phase", "code"),
    [("failed", "failed", "ExportFailed")],
)
def test_graph_terminal_failure(graph_status, phase, code):
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete({"outcome": "ok", "status": graph_status, "progress": None, "completedAt": None})
    assert d.pending().input["writeManifest"] is False
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == phase
    assert reply["output"]["error"]["code"] == code


@pytest.mark.parametrize("graph_status", ["notStarted", "running", "unknownFutureValue", "new"])
def test_pending_and_unknown_statuses_keep_waiting(graph_status):
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete({"outcome": "ok", "status": graph_status, "progress": None, "completedAt": None})
    assert d.pending().kind == "timer"


def test_permanent_submit_error_fails_without_retry():
    d = _driver()
    d.episode()
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 0})
    error = {"status": 403, "code": "Forbidden", "message": "nope", "category": "configuration"}
    d.complete({"outcome": "failed", "error": error}, name="submit_export")
    assert d.pending().name == "finalize_export"
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "Forbidden"
    assert [a.name for a in d.actions].count("submit_export") == 1


def test_throttled_submit_waits_and_tries_again():
    d = _driver()
    d.episode()
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 0})
    d.complete({"outcome": "retry", "retryAfterSeconds": 300, "error": {"code": "TooMany"}})
    timer = d.pending()
    assert timer.fire_at - d.now == timedelta(seconds=300)
    d.fire_timer()
    assert d.pending().name == "submit_export"


def test_existing_request_info_fails_as_ambiguous_instead_of_resubmitting():
    d = _driver()
    d.episode()
    d.complete({"container": "c", "requestInfoExists": True, "settleSeconds": 0})
    assert "submit_export" not in [a.name for a in d.actions]
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["error"]["code"] == "SubmitOutcomeUnknown"


def test_overall_timeout_ends_timed_out():
    d = _driver(timeout_days=1, max_poll_interval_seconds=24 * 3600, rounds_per_history=500)
    _through_submit(d)
    for _ in range(60):
        if d.pending().kind == "activity" and d.pending().name == "finalize_export":
            break
        if d.pending().kind == "timer":
            d.fire_timer()
        else:
            d.complete(_running())
    assert d.pending().name == "finalize_export"
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == "timed_out"
    assert reply["output"]["error"]["code"] == "ExportTimedOut"
    assert d.now == datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "the last timer is clamped to the limit"


def test_cancel_event_revokes_and_ends_cancelled():
    d = _driver()
    _through_submit(d)
    d.raise_event("cancel", {"reason": "withdrawn by the data subject"})
    assert d.pending().name == "finalize_export"
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == "cancelled"
    assert reply["output"]["error"]["message"] == "withdrawn by the data subject"


def test_activity_exhausting_its_retries_still_ends_in_a_terminal_result():
    d = _driver()
    d.episode()
    for _ in range(5):
        reply = d.fail_attempt("ServiceRequestError: storage unreachable")
    # prepare_container never succeeded: no container, so nothing to revoke.
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "ActivityFailed"
    assert "storage unreachable" in reply["output"]["error"]["message"]


def test_no_custom_status_input_or_output_holds_a_sas():
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete({"outcome": "ok", "status": "complete", "progress": 100, "completedAt": None})
    d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    text = json.dumps([d.replies, d.history, d.input])
    assert "sig=" not in text
    assert "?sv=" not in text
