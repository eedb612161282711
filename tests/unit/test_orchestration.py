"""The export orchestration, replayed through the SDK's real entry point."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsr_export.domain.job import ExportJob, ExportPolicy
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


def test_user_lookup_waits_out_throttling_then_fails_if_graph_never_answers():
    job = ExportJob(request_id="R-3", user="ada@contoso.com")
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    throttled = {"outcome": "retry", "retryAfterSeconds": 90, "error": {"code": "TooManyRequests"}}
    d.complete(throttled, name="resolve_user")
    timer = d.pending()
    assert timer.kind == "timer"
    assert timer.fire_at - d.now == timedelta(seconds=90)
    d.fire_timer()
    d.complete({"outcome": "ok", "userId": USER_ID}, name="resolve_user")
    assert d.pending().name == "prepare_container"

    d = Driver("export_personal_data", job.to_input())
    d.episode()
    for _ in range(8):
        reply = d.complete(throttled, name="resolve_user")
        if reply["isDone"]:
            break
        d.fire_timer()
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "TooManyRequests"
    assert [a.name for a in d.actions].count("resolve_user") == 8


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
        d.complete(_running(progress), name="check_export")
    last_call = d.pending()
    assert last_call.kind == "timer"
    assert last_call.fire_at == d.now, "a zero-length race lets a pending cancel in first"
    reply = d.fire_timer()
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
    audit = finalize.input["audit"]
    assert audit["outcome"] == "completed"
    assert audit["operationId"] == "op-1"
    assert audit["acceptedAt"] == "2026-03-01T09:00:00+00:00"
    assert audit["finishedAt"] == d.now.isoformat()
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


# -- callbacks, legal deadline, early cancel --
CALLBACK = "https://acme.service-now.com/api/dsr/cb"
DELIVERED = {"delivered": True, "status": 204, "permanent": False, "reason": None}
FINALIZED = {"manifest": None, "sas": {"revoked": True, "expiresAt": None}}


def _ticket_driver(
    *,
    deadline: str = "2026-04-01T09:00:00+00:00",
    warning: str = "2026-03-25T09:00:00+00:00",
    **policy: int,
) -> Driver:
    job = ExportJob(
        request_id="RITM0001",
        user="ada@contoso.com",
        user_id=USER_ID,
        policy=ExportPolicy(**policy),
        received_at="2026-03-01T09:00:00+00:00",
        regulation="gdpr",
        legal_deadline=deadline,
        warning_at=warning,
        callback_url=CALLBACK,
    )
    return Driver("export_personal_data", job.to_input())


def _event_types(d: Driver) -> list[str]:
    return [a.input["event"]["type"] for a in d.activities("send_callback")]


def _through_submit_with_callbacks(d: Driver) -> None:
    d.episode()
    d.complete(DELIVERED, name="send_callback")  # accepted
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 30})
    d.fire_timer()
    d.complete(_accepted(), name="submit_export")
    d.complete(DELIVERED, name="send_callback")  # exporting


def test_ticket_hears_accepted_exporting_and_completed_in_order():
    d = _ticket_driver()
    reply = d.episode()
    accepted = d.pending()
    assert accepted.name == "send_callback"
    assert accepted.input["url"] == CALLBACK
    assert accepted.input["messageId"].startswith("msg_")
    event = accepted.input["event"]
    assert event["type"] == "dsr.accepted"
    assert event["data"]["requestId"] == "RITM0001"
    assert event["data"]["deadline"] == "2026-04-01T09:00:00+00:00"
    assert event["data"]["daysLeft"] == 31
    assert "ada@contoso.com" not in json.dumps(accepted.input), "no UPN in a callback"
    assert reply["customStatus"]["deadline"] == "2026-04-01T09:00:00+00:00"

    d.complete(DELIVERED, name="send_callback")
    assert d.pending().name == "prepare_container", "the export goes on after the callback"
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 30})
    d.fire_timer()
    d.complete(_accepted(), name="submit_export")
    exporting = d.pending()
    assert exporting.input["event"]["type"] == "dsr.exporting"
    assert exporting.input["event"]["data"]["operationId"] == "op-1"
    d.complete(DELIVERED, name="send_callback")
    assert d.pending().kind == "timer"

    d.fire_timer()
    d.complete({"outcome": "ok", "status": "complete", "progress": 100, "completedAt": None})
    manifest = {"blobCount": 3, "totalBytes": 42, "products": {"Exchange": 3}}
    d.complete({"manifest": manifest, "sas": {"revoked": True, "expiresAt": None}})
    completed = d.pending()
    assert completed.input["event"]["type"] == "dsr.completed"
    assert completed.input["event"]["data"]["manifest"] == manifest
    reply = d.complete(DELIVERED, name="send_callback")
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "completed"
    assert reply["output"]["deadline"] == "2026-04-01T09:00:00+00:00"
    assert "callbacks" not in reply["output"]
    assert _event_types(d) == ["dsr.accepted", "dsr.exporting", "dsr.completed"]
    ids = [a.input["messageId"] for a in d.activities("send_callback")]
    assert len(set(ids)) == 3


def test_no_callback_url_means_no_callbacks():
    d = _driver()
    _through_submit(d)
    assert d.activities("send_callback") == []


def test_a_callback_that_keeps_failing_backs_off_then_is_recorded_and_the_dsr_goes_on():
    d = _ticket_driver()
    d.episode()
    first_id = d.pending().input["messageId"]
    waits = []
    for _ in range(3):
        d.fail("CallbackDeliveryError: callback not delivered: ConnectionError")
        timer = d.pending()
        waits.append(int((timer.fire_at - d.now).total_seconds()))
        d.fire_timer()
        assert d.pending().input["messageId"] == first_id, "same webhook-id on every attempt"
    reply = d.fail("CallbackDeliveryError: callback not delivered: ConnectionError")
    assert waits == [30, 120, 600]
    assert len(d.activities("send_callback")) == 4
    assert d.pending().name == "prepare_container"
    assert reply["customStatus"]["callbacks"] == {"failed": ["dsr.accepted"]}

    d.complete({"container": "c", "requestInfoExists": True, "settleSeconds": 0})
    d.complete(FINALIZED, name="finalize_export")
    reply = d.complete(DELIVERED, name="send_callback")  # the failure event gets through
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "SubmitOutcomeUnknown"
    assert reply["output"]["callbacks"] == {"failed": ["dsr.accepted"]}
    assert _event_types(d)[-1] == "dsr.failed"


def test_a_permanently_refused_callback_is_not_retried():
    d = _ticket_driver()
    d.episode()
    reply = d.complete(
        {"delivered": False, "status": 404, "permanent": True, "reason": "receiver answered 404"}
    )
    assert d.pending().name == "prepare_container"
    assert len(d.activities("send_callback")) == 1
    assert reply["customStatus"]["callbacks"] == {"failed": ["dsr.accepted"]}


def _run_until_continue_as_new(d: Driver) -> None:
    """Answer everything (timers fire, callbacks arrive, Graph keeps running) until the
    execution continues as new."""
    for _ in range(100):
        if d.actions[-1].kind == "continue_as_new":
            return
        action = d.pending()
        if action.kind == "timer":
            d.fire_timer()
        elif action.name == "send_callback":
            d.complete(DELIVERED)
        else:
            d.complete(_running(), name="check_export")
    raise AssertionError("never continued as new")


def test_the_deadline_warning_is_sent_once_and_survives_continue_as_new(caplog):
    caplog.set_level("WARNING", logger="dsr_export")
    # The warning falls due between the first and second poll; 3 rounds per history.
    d = _ticket_driver(warning="2026-03-01T09:02:00+00:00", rounds_per_history=3)
    _through_submit_with_callbacks(d)
    _run_until_continue_as_new(d)
    assert _event_types(d).count("dsr.deadline_warning") == 1
    warning = next(
        a for a in d.activities("send_callback") if a.input["event"]["type"].endswith("warning")
    )
    assert warning.input["event"]["data"]["deadlineWarning"] is True
    assert warning.input["event"]["data"]["daysLeft"] == 31
    carried = ExportJob.from_input(d.actions[-1].input)
    assert carried.warned is True
    assert carried.legal_deadline == "2026-04-01T09:00:00+00:00"
    assert carried.callback_url == CALLBACK

    d.continue_as_new()
    _run_until_continue_as_new(d)
    assert d.activities("send_callback") == [], "not warned again in the next execution"
    lines = [r.getMessage() for r in caplog.records if "deadline_warning" in r.getMessage()]
    assert len(lines) == 1, "logged once, not on every replay"
    assert "request_id=RITM0001" in lines[0]
    assert "deadline=2026-04-01T09:00:00+00:00" in lines[0]


def test_a_poll_wakes_up_for_the_warning_moment():
    d = _ticket_driver(warning="2026-03-01T09:20:00+00:00", max_poll_interval_seconds=3600)
    _through_submit_with_callbacks(d)
    timer = d.pending()
    assert timer.fire_at - d.now == timedelta(seconds=60)  # the submit's Retry-After
    d.fire_timer()
    d.complete(_running(), name="check_export")
    d.fire_timer()
    d.complete(_running(), name="check_export")
    d.fire_timer()
    d.complete(_running(), name="check_export")  # waits 60, 120, 240 s ...
    d.fire_timer()
    d.complete(_running(), name="check_export")
    timer = d.pending()
    assert timer.fire_at == datetime(2026, 3, 1, 9, 20, tzinfo=UTC), "clamped to the warning"
    d.fire_timer()
    d.complete(_running(), name="check_export")
    assert d.pending().input["event"]["type"] == "dsr.deadline_warning"


def test_a_dsr_received_long_ago_is_reported_overdue_once_without_a_separate_warning(caplog):
    caplog.set_level("ERROR", logger="dsr_export")
    d = _ticket_driver(deadline="2026-02-28T09:00:00+00:00", warning="2026-02-21T09:00:00+00:00")
    _through_submit_with_callbacks(d)
    overdue = d.pending()
    assert overdue.input["event"]["type"] == "dsr.deadline_overdue"
    assert overdue.input["event"]["data"]["overdue"] is True
    assert overdue.input["event"]["data"]["daysLeft"] == -1
    d.complete(DELIVERED)
    for _ in range(3):
        d.fire_timer()
        d.complete(_running(), name="check_export")
    assert _event_types(d).count("dsr.deadline_overdue") == 1
    assert "dsr.deadline_warning" not in _event_types(d)
    assert sum("deadline_overdue" in r.getMessage() for r in caplog.records) == 1


# The SDK warns when it buffers an event nobody waits for yet: that buffering is the point.
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")
def test_a_cancel_before_the_submit_is_honoured_without_submitting():
    d = _ticket_driver()
    d.episode()
    d.complete(DELIVERED, name="send_callback")
    d.raise_event("cancel", {"reason": "ticket withdrawn"})  # while storage is being prepared
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 30})
    assert d.pending().name == "finalize_export", "the settle wait ends at once"
    assert d.activities("submit_export") == []
    d.complete(FINALIZED)
    reply = d.complete(DELIVERED, name="send_callback")
    assert reply["output"]["phase"] == "cancelled"
    assert reply["output"]["error"]["message"] == "ticket withdrawn"
    assert _event_types(d)[-1] == "dsr.cancelled"


# The SDK warns when it buffers an event nobody waits for yet: that buffering is the point.
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")
def test_a_cancel_buffered_during_the_submit_wins_the_first_poll_without_waiting():
    d = _driver()
    d.episode()
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 0})
    d.raise_event("cancel", {"reason": "withdrawn"})  # arrives while submit_export runs
    started = d.now
    d.complete(_accepted(), name="submit_export")
    assert d.pending().name == "finalize_export"
    assert d.now == started, "no poll timer fired"
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "cancelled"


def test_the_legal_state_round_trips_through_the_orchestration_input():
    job = ExportJob(
        request_id="R1",
        user="u",
        regulation={"days": 30},
        legal_deadline="2026-04-01T09:00:00+00:00",
        warning_at="2026-03-25T09:00:00+00:00",
        callback_url=CALLBACK,
        warned=True,
        failed_callbacks=("dsr.accepted", "dsr.exporting"),
    )
    assert ExportJob.from_input(json.loads(json.dumps(job.to_input()))) == job


def test_cancel_arriving_during_a_later_poll_is_not_swallowed_by_an_old_waiter():
    d = _driver()
    _through_submit(d)
    for progress in (10.0, 20.0):
        d.fire_timer()  # the timer wins this round's race: its cancel waiter stays open
        d.complete(_running(progress), name="check_export")
    d.fire_timer()
    assert d.pending().name == "check_export"
    d.raise_event("cancel", {"reason": "withdrawn mid-poll"})
    d.complete(_running(30.0), name="check_export")
    assert d.pending().name == "finalize_export"
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == "cancelled"
    assert reply["output"]["error"]["message"] == "withdrawn mid-poll"


def test_cancel_received_in_the_last_round_is_honoured_before_continue_as_new():
    d = _driver(rounds_per_history=2)
    _through_submit(d)
    d.fire_timer()
    d.complete(_running(10.0), name="check_export")
    d.fire_timer()
    d.raise_event("cancel", {"reason": "late"})  # arrives while the last check runs
    d.complete(_running(20.0), name="check_export")
    assert d.pending().name == "finalize_export", "not dropped by continue_as_new"
    reply = d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
    assert reply["output"]["phase"] == "cancelled"


def test_storage_refusing_the_app_fails_at_once_with_the_fix():
    d = _driver()
    d.episode()
    error = {"code": "StorageAccessDenied", "category": "configuration", "hint": "key"}
    d.complete({"outcome": "failed", "error": error}, name="prepare_container")
    reply = d.replies[-1]
    assert reply["isDone"] is True, "no container was made: nothing to revoke"
    assert reply["output"]["error"]["code"] == "StorageAccessDenied"
    assert [a.name for a in d.actions].count("prepare_container") == 1


def test_terminal_status_is_complete_before_the_ticket_hears_of_it():
    job = ExportJob(
        request_id="RITM0002",
        user=USER_ID,
        user_id=USER_ID,
        callback_url="https://tickets.example/hooks/dsr",
    )
    d = Driver("export_personal_data", job.to_input())
    answers = {
        "send_callback": {"delivered": True, "permanent": False},
        "prepare_container": {"container": "c", "requestInfoExists": False, "settleSeconds": 0},
        "submit_export": _accepted(),
        "check_export": {"outcome": "ok", "status": "complete", "progress": 100},
        "finalize_export": {
            "manifest": {"blobCount": 2, "totalBytes": 9, "products": {}},
            "sas": {"revoked": True, "expiresAt": None},
        },
    }
    reply = d.episode()
    while not (d.pending().name == "send_callback" and "sas" in reply["customStatus"]):
        action = d.pending()
        reply = d.fire_timer() if action.kind == "timer" else d.complete(answers[str(action.name)])
    assert d.pending().input["event"]["type"] == "dsr.completed"
    assert reply["customStatus"]["phase"] == "completed"
    assert reply["customStatus"]["manifest"]["blobCount"] == 2
    assert reply["customStatus"]["sas"]["revoked"] is True
