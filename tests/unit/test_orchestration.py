"""The export orchestration, replayed through the SDK's real entry point."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsr_export.domain import steps
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.job import ExportJob, ExportPolicy
from tests import answers
from tests.replay import Action, Driver
from testsupport.replay import Ev

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
FINALIZED = answers.finalized()


def _driver(**policy: int) -> Driver:
    job = ExportJob(
        request_id="RITM0001", user=USER_ID, user_id=USER_ID, policy=ExportPolicy(**policy)
    )
    return Driver("export_personal_data", job.to_input())


def _through_submit(d: Driver, retry_after: int = 60) -> dict[str, Any]:
    d.episode()
    d.complete(answers.prepared("dsr-ritm0001-x"), name=steps.PREPARE_CONTAINER.name)
    d.fire_timer()  # the stored access policy settles
    return d.complete(answers.accepted(retry_after), name=steps.SUBMIT_EXPORT.name)


def _running(progress: float = 10.0) -> dict[str, Any]:
    return answers.checked("running", progress)


def _names(d: Driver) -> list[str | None]:
    return [a.name for a in d.actions]


def test_first_episode_prepares_the_container():
    d = _driver()
    reply = d.episode()
    assert _names(d) == [steps.PREPARE_CONTAINER.name]
    assert d.actions[0].input == steps.PrepareContainer(request_id="RITM0001").to_dict()
    assert reply["customStatus"]["phase"] == "preparing_storage"
    assert reply["isDone"] is False


def test_upn_is_resolved_before_anything_touches_storage():
    job = ExportJob(request_id="R-2", user="ada@contoso.com")
    d = Driver("export_personal_data", job.to_input())
    reply = d.episode()
    assert _names(d) == [steps.RESOLVE_USER.name]
    assert reply["customStatus"]["phase"] == "resolving_user"
    d.complete(steps.UserResolved(user_id=USER_ID).to_dict())
    assert d.actions[-1].name == steps.PREPARE_CONTAINER.name


def test_user_lookup_waits_out_throttling_until_the_dsrs_own_time_out():
    job = ExportJob(request_id="R-3", user="ada@contoso.com")
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    throttled = steps.UserResolved.retry(90, {"code": "TooManyRequests"}).to_dict()
    d.complete(throttled, name=steps.RESOLVE_USER.name)
    timer = d.pending()
    assert timer.kind == "timer"
    # Retry-After is the minimum; a jitter fixed for this DSR spreads it by up to half.
    assert timedelta(seconds=90) <= timer.fire_at - d.now <= timedelta(seconds=135)
    d.fire_timer()
    d.complete(steps.UserResolved(user_id=USER_ID).to_dict(), name=steps.RESOLVE_USER.name)
    assert d.pending().name == steps.PREPARE_CONTAINER.name

    job = ExportJob(
        request_id="R-3",
        user="ada@contoso.com",
        policy=ExportPolicy(timeout_days=1, rounds_per_history=500),
    )
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    started, waits = d.now, []
    for _ in range(200):
        reply = d.complete(throttled, name=steps.RESOLVE_USER.name)
        if d.pending().name == steps.RECORD_FINISHED.name:
            break
        waits.append((d.pending().fire_at - d.now).total_seconds())
        d.fire_timer()
    ended = steps.RecordFinished.from_dict(d.pending().input)
    assert (ended.phase, ended.error_code) == ("timed_out", "ExportTimedOut")
    reply = d.complete(steps.Recorded(seq=3).to_dict())
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "timed_out"
    assert reply["output"]["error"]["code"] == "ExportTimedOut"
    assert "TooManyRequests" in reply["output"]["error"]["message"]
    assert d.now == started + timedelta(days=1), "the last wait is clamped to the limit"
    assert max(waits) <= 3600 * 1.5, "the back-off is capped"
    assert waits[5] >= 960 > 2 * waits[0], "and grows first (doubling from 30 s)"


def test_a_long_throttled_lookup_continues_as_new_keeping_its_back_off():
    job = ExportJob(
        request_id="R-3b", user="ada@contoso.com", policy=ExportPolicy(rounds_per_history=3)
    )
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    throttled = steps.UserResolved.retry(60, {"code": "TooManyRequests"}).to_dict()
    for _ in range(4):
        d.complete(throttled, name=steps.RESOLVE_USER.name)
        if d.actions[-1].kind == "continue_as_new":
            break
        d.fire_timer()
    assert d.actions[-1].kind == "continue_as_new"
    carried = ExportJob.from_input(d.actions[-1].input)
    assert carried.throttle_round == 3
    assert carried.user_id is None
    reply = d.continue_as_new()
    assert reply["customStatus"]["phase"] == "resolving_user"
    assert d.pending().name == steps.RESOLVE_USER.name


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
        d.complete(_running(), name=steps.CHECK_EXPORT.name)
    assert waits == [60, 120, 240, 480, 600, 600]


def test_graph_retry_after_is_respected_even_above_the_cap():
    d = _driver(max_poll_interval_seconds=600)
    _through_submit(d)
    d.fire_timer()
    d.complete(steps.ExportChecked.retry(900, {"code": "TooManyRequests"}).to_dict())
    timer = d.pending()
    assert timedelta(seconds=900) <= timer.fire_at - d.now <= timedelta(seconds=1350)


def test_continue_as_new_after_n_rounds_keeps_the_state():
    d = _driver(rounds_per_history=3)
    _through_submit(d)
    for progress in (10.0, 20.0, 30.0):
        d.fire_timer()
        d.complete(_running(progress), name=steps.CHECK_EXPORT.name)
    last_call = d.pending()
    assert last_call.kind == "timer"
    assert last_call.fire_at == d.now, "a zero-length race lets a pending cancel in first"
    reply = d.fire_timer()
    assert d.actions[-1].kind == "continue_as_new"
    carried = ExportJob.from_input(d.actions[-1].input)
    assert carried.operation_id == "op-1"
    assert carried.operation_url == answers.OPERATION_URL
    assert carried.poll_round == 3
    assert carried.progress == 30.0
    assert carried.wait_seconds == 480
    assert carried.started_at == "2026-03-01T09:00:00+00:00"
    assert carried.policy.rounds_per_history == 3
    assert reply.get("output") is None, "continue_as_new is not a terminal result"

    reply = d.continue_as_new()
    fresh = [Ev.ORCHESTRATOR_STARTED, Ev.EXECUTION_STARTED]
    pace = [Ev.EVENT_SENT, Ev.ORCHESTRATOR_COMPLETED, Ev.ORCHESTRATOR_STARTED, Ev.EVENT_RAISED]
    fresh += [*pace, Ev.TIMER_CREATED]
    assert [e["EventType"] for e in d.history] == fresh, "fresh history: the gate's count, a timer"
    timer = d.pending()
    assert timer.kind == "timer"
    assert timer.fire_at - d.now == timedelta(seconds=480)
    assert not [a for a in d.actions if a.kind == "activity"], "no second submit"


def test_complete_writes_manifest_and_revokes():
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete(answers.checked("complete", 100))
    finalize = d.pending()
    assert finalize.name == steps.FINALIZE_EXPORT.name
    finalizing = steps.FinalizeExport.from_dict(finalize.input)
    assert finalizing.write_manifest is True
    # The ending, for the evidence the activity writes (no audit.json any more).
    assert (finalizing.ending, finalizing.operation_id) == ("completed", "op-1")
    assert "audit" not in finalize.input
    manifest = {"blobCount": 3, "totalBytes": 42, "products": {"Exchange": 3}}
    reply = d.complete(answers.finalized(manifest))
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
    d.complete(answers.checked(graph_status))
    assert steps.FinalizeExport.from_dict(d.pending().input).write_manifest is False
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == phase
    assert reply["output"]["error"]["code"] == code


@pytest.mark.parametrize("graph_status", ["notStarted", "running", "unknownFutureValue", "new"])
def test_pending_and_unknown_statuses_keep_waiting(graph_status):
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete(answers.checked(graph_status))
    assert d.pending().kind == "timer"


def test_permanent_submit_error_fails_without_retry():
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=0))
    error: ErrorDoc = {
        "status": 403,
        "code": "Forbidden",
        "message": "nope",
        "category": "configuration",
    }
    d.complete(steps.ExportSubmitted.failed(error).to_dict(), name=steps.SUBMIT_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "Forbidden"
    assert _names(d).count(steps.SUBMIT_EXPORT.name) == 1


def test_a_lone_dsr_submits_as_soon_as_the_policy_settled_through_an_idle_gate():
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=30))
    assert d.pending().fire_at - d.now == timedelta(seconds=30), "the policy settles; no more"
    d.fire_timer()
    assert d.pending().name == steps.SUBMIT_EXPORT.name, "the idle gate let it through at once"
    assert [a.name for a in d.entity_calls()] == ["ask"]
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    calls = [(a.name, a.signal) for a in d.entity_calls()]
    assert calls == [("ask", False), ("report", True), ("pace", False)]
    assert d.entity_calls("report")[-1].input["verdict"] == "accepted"


def test_throttled_submit_waits_and_tries_again():
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=0))
    d.complete(steps.ExportSubmitted.retry(300, {"code": "TooMany"}).to_dict())
    timer = d.pending()
    assert timedelta(seconds=300) <= timer.fire_at - d.now <= timedelta(seconds=450)
    d.fire_timer()
    assert d.pending().name == steps.SUBMIT_EXPORT.name


def _recovered() -> dict[str, Any]:
    return steps.ExportRecovered(
        operation_id="op-lost",
        operation_url="https://graph.microsoft.com/beta/dataPolicyOperations/op-lost",
        submitted_at="2026-03-01T09:00:30+00:00",
        sas_expires_at="2026-04-30T09:00:00+00:00",
        retry_after_seconds=60,
    ).to_dict()


ABSENT = steps.ExportRecovered(outcome=steps.Outcome.ABSENT).to_dict()


def test_a_receipt_without_an_operation_id_is_recovered_not_resubmitted():
    d = _driver()
    d.episode()
    d.complete(answers.prepared("dsr-ritm0001-x", settle_seconds=0, request_info_exists=True))
    lookup = steps.RecoverSubmit.from_dict(d.pending().input)
    assert d.pending().name == steps.RECOVER_SUBMIT.name
    assert (lookup.container, lookup.user_id, lookup.final) == ("dsr-ritm0001-x", USER_ID, False)
    reply = d.complete(_recovered())
    assert steps.SUBMIT_EXPORT.name not in _names(d)
    assert reply["customStatus"]["phase"] == "exporting"
    assert reply["customStatus"]["operationId"] == "op-lost"
    d.fire_timer()
    d.complete(answers.checked("complete", 1.0), name=steps.CHECK_EXPORT.name)
    finalizing = steps.FinalizeExport.from_dict(d.pending().input)
    assert (finalizing.ending, finalizing.operation_id) == ("completed", "op-lost")


def test_a_submit_whose_answer_was_lost_is_recovered():
    d = _driver()
    _through_submit_unknown(d)
    assert d.pending().name == steps.RECOVER_SUBMIT.name
    d.complete(_recovered())
    assert d.pending().kind == "timer"
    assert _names(d).count(steps.SUBMIT_EXPORT.name) == 1


def _through_submit_unknown(d: Driver) -> None:
    d.episode()
    d.complete(answers.prepared("dsr-ritm0001-x", settle_seconds=30))
    d.fire_timer()
    d.complete(steps.ExportSubmitted(outcome=steps.Outcome.UNKNOWN).to_dict())


def test_graphs_word_that_a_submit_never_posted_gives_one_more_submit_in_a_fresh_container():
    d = _driver()
    _through_submit_unknown(d)
    started, lookups = d.now, 0
    while d.pending().kind == "timer" or d.pending().name == steps.RECOVER_SUBMIT.name:
        if d.pending().kind == "timer":
            d.fire_timer()
            continue
        lookups += 1
        final = steps.RecoverSubmit.from_dict(d.pending().input).final
        assert final is (lookups == 5), "only the last lookup revokes the old container's SAS"
        d.complete(ABSENT)
    assert lookups == 5
    assert timedelta(minutes=15) <= d.now - started <= timedelta(minutes=23)
    again = steps.PrepareContainer.from_dict(d.pending().input)
    assert (d.pending().name, again.attempt) == (steps.PREPARE_CONTAINER.name, 2)
    d.complete(answers.prepared("dsr-ritm0001-x-a2", settle_seconds=30))
    d.fire_timer()
    submit = steps.SubmitExport.from_dict(d.pending().input)
    assert submit.container == "dsr-ritm0001-x-a2"
    reply = d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    assert reply["customStatus"]["container"] == "dsr-ritm0001-x-a2"
    assert _names(d).count(steps.SUBMIT_EXPORT.name) == 2


def test_a_receipt_that_is_not_this_users_fails_as_unknown_and_never_resubmits():
    d = _driver()
    _through_submit_unknown(d)
    unknown = {"code": "SubmitOutcomeUnknown", "category": "operation", "message": "m"}
    d.complete(steps.ExportRecovered.failed(unknown).to_dict())  # type: ignore[arg-type]
    reply = d.complete(FINALIZED, name=steps.FINALIZE_EXPORT.name)
    assert reply["output"]["error"]["code"] == "SubmitOutcomeUnknown"
    assert _names(d).count(steps.SUBMIT_EXPORT.name) == 1


def test_submits_never_posted_are_tried_a_bounded_number_of_times():
    d = _driver()
    d.episode()
    for _ in range(200):
        pending = d.pending()
        if pending.kind == "timer":
            d.fire_timer()
        elif pending.name == steps.PREPARE_CONTAINER.name:
            attempt = steps.PrepareContainer.from_dict(pending.input).attempt
            d.complete(answers.prepared(f"c-{attempt}", settle_seconds=0))
        elif pending.name == steps.SUBMIT_EXPORT.name:
            d.complete(steps.ExportSubmitted(outcome=steps.Outcome.UNKNOWN).to_dict())
        elif pending.name == steps.RECOVER_SUBMIT.name:
            d.complete(ABSENT)
        else:
            break
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(FINALIZED)
    assert reply["output"]["error"]["code"] == "SubmitNotPosted"
    assert _names(d).count(steps.SUBMIT_EXPORT.name) == 5


def test_overall_timeout_ends_timed_out():
    d = _driver(timeout_days=1, max_poll_interval_seconds=24 * 3600, rounds_per_history=500)
    _through_submit(d)
    for _ in range(60):
        if d.pending().kind == "activity" and d.pending().name == steps.FINALIZE_EXPORT.name:
            break
        if d.pending().kind == "timer":
            d.fire_timer()
        else:
            d.complete(_running())
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "timed_out"
    assert reply["output"]["error"]["code"] == "ExportTimedOut"
    assert d.now == datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "the last timer is clamped to the limit"


def test_cancel_event_revokes_and_ends_cancelled():
    d = _driver()
    _through_submit(d)
    digest = "ab" * 32
    d.raise_event("cancel", {"reasonCode": "withdrawn", "reasonSha256": digest})
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "cancelled"
    assert reply["output"]["error"] == {
        "code": "Cancelled",
        "message": "cancelled on request",
        "reasonCode": "withdrawn",
        "reasonSha256": digest,
    }


def test_a_cancel_event_of_an_earlier_version_leaves_no_words_in_the_output():
    """F-7: an event raised before the upgrade carries the text; the output keeps its hash."""
    d = _driver()
    _through_submit(d)
    d.raise_event("cancel", {"reason": "Jane Doe +44 7700 900123"})
    reply = d.complete(FINALIZED)
    assert "Jane" not in json.dumps(reply["output"])
    assert reply["output"]["error"]["reasonSha256"] == (
        hashlib.sha256(b"Jane Doe +44 7700 900123").hexdigest()
    )


def test_activity_exhausting_its_retries_still_ends_in_a_terminal_result():
    d = _driver()
    d.episode()
    for _ in range(5):
        d.fail_attempt("ServiceRequestError: storage unreachable")
    # prepare_container never succeeded: no container, nothing to revoke; the ending is
    # recorded all the same.
    assert d.pending().name == steps.RECORD_FINISHED.name
    reply = d.complete(steps.Recorded(seq=2).to_dict())
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "ActivityFailed"
    assert "storage unreachable" in reply["output"]["error"]["message"]


def test_no_custom_status_input_or_output_holds_a_sas():
    d = _driver()
    _through_submit(d)
    d.fire_timer()
    d.complete(answers.checked("complete", 100))
    d.complete(FINALIZED)
    text = json.dumps([d.replies, d.history, d.input])
    assert "sig=" not in text
    assert "?sv=" not in text


# -- callbacks, legal deadline, early cancel --
CALLBACK = "https://acme.service-now.com/api/dsr/cb"
DELIVERED = answers.DELIVERED


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


def _callbacks(d: Driver) -> list[steps.SendCallback]:
    """Every callback the orchestrator asked for, as its step input."""
    return [steps.SendCallback.from_dict(a.input) for a in d.activities(steps.SEND_CALLBACK.name)]


def _callback(action: Action) -> steps.SendCallback:
    assert action.name == steps.SEND_CALLBACK.name, action
    return steps.SendCallback.from_dict(action.input)


def _event_types(d: Driver) -> list[str]:
    return [c.event["type"] for c in _callbacks(d)]


def _through_submit_with_callbacks(d: Driver) -> None:
    d.episode()
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)  # accepted
    d.complete(answers.prepared())
    d.fire_timer()
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)  # exporting


def test_ticket_hears_accepted_exporting_and_completed_in_order():
    d = _ticket_driver()
    reply = d.episode()
    accepted = _callback(d.pending())
    assert accepted.url == CALLBACK
    assert accepted.message_id.startswith("msg_")
    event = accepted.event
    assert event["type"] == "dsr.accepted"
    assert event["data"]["requestId"] == "RITM0001"
    assert event["data"]["deadline"] == "2026-04-01T09:00:00+00:00"
    assert event["data"]["daysLeft"] == 31
    assert "ada@contoso.com" not in json.dumps(d.pending().input), "no UPN in a callback"
    assert reply["customStatus"]["deadline"] == "2026-04-01T09:00:00+00:00"

    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    assert d.pending().name == steps.PREPARE_CONTAINER.name, "the export goes on after the callback"
    d.complete(answers.prepared())
    d.fire_timer()
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    exporting = _callback(d.pending()).event
    assert exporting["type"] == "dsr.exporting"
    assert exporting["data"]["operationId"] == "op-1"
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    assert d.pending().kind == "timer"

    d.fire_timer()
    d.complete(answers.checked("complete", 100))
    manifest = {"blobCount": 3, "totalBytes": 42, "products": {"Exchange": 3}}
    d.complete(answers.finalized(manifest))
    completed = _callback(d.pending()).event
    assert completed["type"] == "dsr.completed"
    assert completed["data"]["manifest"] == manifest
    reply = d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    assert reply["isDone"] is True
    assert reply["output"]["phase"] == "completed"
    assert reply["output"]["deadline"] == "2026-04-01T09:00:00+00:00"
    assert "callbacks" not in reply["output"]
    assert _event_types(d) == ["dsr.accepted", "dsr.exporting", "dsr.completed"]
    ids = [c.message_id for c in _callbacks(d)]
    assert len(set(ids)) == 3


def test_no_callback_url_means_no_callbacks():
    d = _driver()
    _through_submit(d)
    assert _callbacks(d) == []


def test_a_callback_that_keeps_failing_backs_off_then_is_recorded_and_the_dsr_goes_on():
    d = _ticket_driver()
    d.episode()
    first_id = _callback(d.pending()).message_id
    waits = []
    for _ in range(3):
        d.fail("CallbackDeliveryError: callback not delivered: ConnectionError")
        timer = d.pending()
        waits.append(int((timer.fire_at - d.now).total_seconds()))
        d.fire_timer()
        assert _callback(d.pending()).message_id == first_id, "same webhook-id on every attempt"
    reply = d.fail("CallbackDeliveryError: callback not delivered: ConnectionError")
    assert waits == [30, 120, 600]
    assert len(_callbacks(d)) == 4
    assert d.pending().name == steps.PREPARE_CONTAINER.name
    assert reply["customStatus"]["callbacks"] == {"failed": ["dsr.accepted"]}

    d.complete(answers.prepared(settle_seconds=0))
    error: ErrorDoc = {"status": 403, "code": "Forbidden", "message": "m"}
    d.complete(steps.ExportSubmitted.failed(error).to_dict(), name=steps.SUBMIT_EXPORT.name)
    d.complete(FINALIZED, name=steps.FINALIZE_EXPORT.name)
    reply = d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)  # the failure event gets through
    assert reply["output"]["phase"] == "failed"
    assert reply["output"]["error"]["code"] == "Forbidden"
    assert reply["output"]["callbacks"] == {"failed": ["dsr.accepted"]}
    assert _event_types(d)[-1] == "dsr.failed"


def test_a_permanently_refused_callback_is_not_retried():
    d = _ticket_driver()
    d.episode()
    refused = steps.CallbackDelivery(
        delivered=False, status=404, permanent=True, reason="receiver answered 404"
    )
    reply = d.complete(refused.to_dict())
    assert d.pending().name == steps.PREPARE_CONTAINER.name
    assert len(_callbacks(d)) == 1
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
        elif action.name == steps.SEND_CALLBACK.name:
            d.complete(DELIVERED)
        elif action.name == steps.READ_EXTENSION_ASKS.name:
            d.complete(steps.ExtensionAsks().to_dict())  # none were asked
        else:
            d.complete(_running(), name=steps.CHECK_EXPORT.name)
    raise AssertionError("never continued as new")


def test_the_deadline_warning_is_sent_once_and_survives_continue_as_new(caplog):
    caplog.set_level("WARNING", logger="dsr_export")
    # The warning falls due between the first and second poll; 3 rounds per history.
    d = _ticket_driver(warning="2026-03-01T09:02:00+00:00", rounds_per_history=3)
    _through_submit_with_callbacks(d)
    _run_until_continue_as_new(d)
    assert _event_types(d).count("dsr.deadline_warning") == 1
    warning = next(c.event for c in _callbacks(d) if c.event["type"].endswith("warning"))
    assert warning["data"]["deadlineWarning"] is True
    assert warning["data"]["daysLeft"] == 31
    carried = ExportJob.from_input(d.actions[-1].input)
    assert carried.warned is True
    assert carried.legal_deadline == "2026-04-01T09:00:00+00:00"
    assert carried.callback_url == CALLBACK

    d.continue_as_new()
    _run_until_continue_as_new(d)
    assert _callbacks(d) == [], "not warned again in the next execution"
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
    d.complete(_running(), name=steps.CHECK_EXPORT.name)
    d.fire_timer()
    d.complete(_running(), name=steps.CHECK_EXPORT.name)
    d.fire_timer()
    d.complete(_running(), name=steps.CHECK_EXPORT.name)  # waits 60, 120, 240 s ...
    d.fire_timer()
    d.complete(_running(), name=steps.CHECK_EXPORT.name)
    timer = d.pending()
    assert timer.fire_at == datetime(2026, 3, 1, 9, 20, tzinfo=UTC), "clamped to the warning"
    d.fire_timer()
    d.complete(_running(), name=steps.CHECK_EXPORT.name)
    assert _callback(d.pending()).event["type"] == "dsr.deadline_warning"


def test_a_dsr_received_long_ago_is_reported_overdue_once_without_a_separate_warning(caplog):
    caplog.set_level("ERROR", logger="dsr_export")
    d = _ticket_driver(deadline="2026-02-28T09:00:00+00:00", warning="2026-02-21T09:00:00+00:00")
    _through_submit_with_callbacks(d)
    overdue = _callback(d.pending()).event
    assert overdue["type"] == "dsr.deadline_overdue"
    assert overdue["data"]["overdue"] is True
    assert overdue["data"]["daysLeft"] == -1
    d.complete(DELIVERED)
    for _ in range(3):
        d.fire_timer()
        d.complete(_running(), name=steps.CHECK_EXPORT.name)
    assert _event_types(d).count("dsr.deadline_overdue") == 1
    assert "dsr.deadline_warning" not in _event_types(d)
    assert sum("deadline_overdue" in r.getMessage() for r in caplog.records) == 1


# The SDK warns when it buffers an event nobody waits for yet: that buffering is the point.
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")
def test_a_cancel_before_the_submit_is_honoured_without_submitting():
    d = _ticket_driver()
    d.episode()
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    d.raise_event("cancel", {"reason": "ticket withdrawn"})  # while storage is being prepared
    d.complete(answers.prepared())
    assert d.pending().name == steps.FINALIZE_EXPORT.name, "the settle wait ends at once"
    assert d.activities(steps.SUBMIT_EXPORT.name) == []
    d.complete(FINALIZED)
    reply = d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    assert reply["output"]["phase"] == "cancelled"
    assert (
        reply["output"]["error"]["reasonSha256"] == hashlib.sha256(b"ticket withdrawn").hexdigest()
    )
    assert _event_types(d)[-1] == "dsr.cancelled"


# The SDK warns when it buffers an event nobody waits for yet: that buffering is the point.
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")
def test_a_cancel_buffered_during_the_submit_wins_the_first_poll_without_waiting():
    d = _driver()
    d.episode()
    d.complete(answers.prepared(settle_seconds=0))
    d.raise_event("cancel", {"reason": "withdrawn"})  # arrives while submit_export runs
    started = d.now
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name
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
        d.complete(_running(progress), name=steps.CHECK_EXPORT.name)
    d.fire_timer()
    assert d.pending().name == steps.CHECK_EXPORT.name
    d.raise_event("cancel", {"reason": "withdrawn mid-poll"})
    d.complete(_running(30.0), name=steps.CHECK_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "cancelled"
    assert reply["output"]["error"]["reasonSha256"] == (
        hashlib.sha256(b"withdrawn mid-poll").hexdigest()
    )


def test_cancel_received_in_the_last_round_is_honoured_before_continue_as_new():
    d = _driver(rounds_per_history=2)
    _through_submit(d)
    d.fire_timer()
    d.complete(_running(10.0), name=steps.CHECK_EXPORT.name)
    d.fire_timer()
    d.raise_event("cancel", {"reason": "late"})  # arrives while the last check runs
    d.complete(_running(20.0), name=steps.CHECK_EXPORT.name)
    assert d.pending().name == steps.FINALIZE_EXPORT.name, "not dropped by continue_as_new"
    reply = d.complete(FINALIZED)
    assert reply["output"]["phase"] == "cancelled"


def test_storage_refusing_the_app_fails_at_once_with_the_fix():
    d = _driver()
    d.episode()
    error: ErrorDoc = {"code": "StorageAccessDenied", "category": "configuration", "hint": "key"}
    d.complete(steps.ContainerPrepared.failed(error).to_dict(), name=steps.PREPARE_CONTAINER.name)
    assert d.pending().name == steps.RECORD_FINISHED.name, "no container: nothing to revoke"
    reply = d.complete(steps.Recorded(seq=2).to_dict())
    assert reply["isDone"] is True
    assert reply["output"]["error"]["code"] == "StorageAccessDenied"
    assert _names(d).count(steps.PREPARE_CONTAINER.name) == 1


def test_terminal_status_is_complete_before_the_ticket_hears_of_it():
    job = ExportJob(
        request_id="RITM0002",
        user=USER_ID,
        user_id=USER_ID,
        callback_url="https://tickets.example/hooks/dsr",
    )
    d = Driver("export_personal_data", job.to_input())
    results = {
        steps.SEND_CALLBACK.name: DELIVERED,
        steps.PREPARE_CONTAINER.name: answers.prepared(settle_seconds=0),
        steps.SUBMIT_EXPORT.name: answers.accepted(),
        steps.CHECK_EXPORT.name: answers.checked("complete", 100),
        steps.FINALIZE_EXPORT.name: answers.finalized(
            {"blobCount": 2, "totalBytes": 9, "products": {}}
        ),
    }
    reply = d.episode()
    while not (d.pending().name == steps.SEND_CALLBACK.name and "sas" in reply["customStatus"]):
        action = d.pending()
        reply = d.fire_timer() if action.kind == "timer" else d.complete(results[str(action.name)])
    assert _callback(d.pending()).event["type"] == "dsr.completed"
    assert reply["customStatus"]["phase"] == "completed"
    assert reply["customStatus"]["manifest"]["blobCount"] == 2
    assert reply["customStatus"]["sas"]["revoked"] is True


ACTOR = {"kind": "user", "id": "oid-privacy-officer"}


def _asked(ask_id: str, seq: int, **ask: Any) -> dict[str, Any]:
    """What ``read_extension_asks`` answers for one ask the API recorded."""
    entry = {"askId": ask_id, "seq": seq, "ask": ask, "actor": ACTOR}
    return steps.ExtensionAsks(asks=[entry]).to_dict()


def _continue_after_extension(d: Driver) -> None:
    """The zero-length race for a late cancel, then a fresh execution that reads the asks
    again (none new) before it waits on."""
    zero = d.pending()
    assert (zero.kind, zero.fire_at) == ("timer", d.now), "a cancel that came meanwhile wins"
    d.fire_timer()
    assert d.actions[-1].kind == "continue_as_new", "a fresh execution, a fresh extend waiter"
    d.continue_as_new()
    read = d.pending()
    assert read.name == steps.READ_EXTENSION_ASKS.name
    d.complete(steps.ExtensionAsks().to_dict())


def test_an_extension_during_a_wait_is_recorded_told_and_rearms_the_overdue_notice():
    d = _ticket_driver(deadline="2026-02-28T09:00:00+00:00", warning="2026-02-21T09:00:00+00:00")
    _through_submit_with_callbacks(d)
    assert _callback(d.pending()).event["type"] == "dsr.deadline_overdue"
    d.complete(DELIVERED)
    waiting = d.pending()
    assert waiting.kind == "timer"

    d.raise_event("extend", {"askId": "ask_1"})
    read = steps.ReadExtensionAsks.from_dict(d.pending().input)
    assert read.after_seq == -1, "the asks are read from the evidence, not the event"
    d.complete(_asked("ask_1", 4, months=1, reasonCode="complexity"))
    recorded = steps.RecordExtension.from_dict(d.pending().input)
    assert d.pending().name == steps.RECORD_EXTENSION.name
    assert (recorded.ask_id, recorded.previous_deadline, recorded.deadline) == (
        "ask_1",
        "2026-02-28T09:00:00+00:00",
        "2026-03-28T09:00:00+00:00",
    )
    assert (recorded.actor_kind, recorded.actor_id) == ("user", "oid-privacy-officer")
    reply = d.complete(steps.Recorded(seq=7).to_dict())
    assert reply["customStatus"]["deadline"] == "2026-03-28T09:00:00+00:00"
    assert reply["customStatus"]["originalDeadline"] == "2026-02-28T09:00:00+00:00"
    assert reply["customStatus"]["extensions"][0]["askId"] == "ask_1"
    told = _callback(d.pending()).event
    assert told["type"] == "deadline.extended"
    assert told["data"]["previousDeadline"] == "2026-02-28T09:00:00+00:00"
    assert told["data"]["overdue"] is False
    d.complete(DELIVERED)
    _continue_after_extension(d)
    carried = ExportJob.from_input(d.input)
    assert carried.ask_cursor == 4
    assert d.pending().fire_at == waiting.fire_at, "the wait goes on to the same moment"

    d.fire_timer()
    d.complete(_running(), name=steps.CHECK_EXPORT.name)
    assert "dsr.deadline_overdue" not in _event_types(d), "not overdue any more"
    timer = d.pending()
    assert timer.fire_at <= datetime(2026, 3, 21, 9, tzinfo=UTC), "wakes for the new warning"


def test_an_extension_beyond_the_cap_that_slipped_past_the_api_is_refused(caplog):
    caplog.set_level("WARNING", logger="dsr_export")
    d = _ticket_driver()
    _through_submit_with_callbacks(d)
    d.raise_event("extend", {"askId": "ask_9"})
    reply = d.complete(_asked("ask_9", 3, months=3))
    assert not d.activities(steps.RECORD_EXTENSION.name), "nothing recorded, nothing told"
    assert reply["customStatus"]["refusedExtensions"] == ["ask_9"]
    assert reply["customStatus"]["deadline"] == "2026-04-01T09:00:00+00:00"
    assert any("extension_refused" in r.getMessage() for r in caplog.records)
    _continue_after_extension(d)
    assert ExportJob.from_input(d.input).refused_extensions == ("ask_9",)


def test_a_retried_dsr_tells_the_ticket_it_runs_again_and_uses_a_fresh_container():
    job = ExportJob(
        request_id="RITM0001",
        user=USER_ID,
        user_id=USER_ID,
        callback_url=CALLBACK,
        attempt=2,
        submit_attempt=3,
        submit_base=2,
        earlier_attempts=({"attempt": 1, "phase": "failed"},),
    )
    d = Driver("export_personal_data", job.to_input())
    reply = d.episode()
    first = _callback(d.pending()).event
    assert first["type"] == "export.retried"
    assert first["data"]["attempt"] == 2
    assert reply["customStatus"]["attempt"] == 2
    assert reply["customStatus"]["attempts"] == [{"attempt": 1, "phase": "failed"}]
    d.complete(DELIVERED)
    assert steps.PrepareContainer.from_dict(d.pending().input).attempt == 3
