"""A storage outage while Graph exports: the steps that touch the evidence (or the export) account
after the submit wait a long outage out on durable timers instead of ending the DSR, and a DSR
that ends all the same is resumed by ``retry`` at the export Graph has, never submitted twice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from dsr_export.domain import errors, pacing, steps
from dsr_export.domain.job import ExportJob
from dsr_export.domain.request import container_name
from tests import answers
from tests.replay import Driver, Kind

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
RID = "RITM0017"
CONTAINER = container_name(RID, 1)
CALLBACK = "https://acme.service-now.com/api/dsr/cb"
#: What the Durable host hands back of a check whose evidence account did not answer.
OUTAGE = (
    f"Activity function '{steps.CHECK_EXPORT.name}' failed: StorageUnavailableError: storage did "
    f"not answer step {steps.CHECK_EXPORT.name} (connection: ServiceRequestError)"
)


def _job(**fields: Any) -> ExportJob:
    return ExportJob(request_id=RID, user=USER_ID, user_id=USER_ID, **fields)


def _exporting(d: Driver, *, callbacks: bool = False) -> None:
    """Accepted, container prepared, submitted: the DSR polls Graph's operation."""
    d.episode()
    if callbacks:
        d.complete(answers.DELIVERED, name=steps.SEND_CALLBACK.name)
    d.complete(answers.prepared(CONTAINER, settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    _until_the_submit(d)
    d.complete(answers.accepted(), name=steps.SUBMIT_EXPORT.name)
    if callbacks:
        d.complete(answers.DELIVERED, name=steps.SEND_CALLBACK.name)
    d.fire_timer()  # the first poll's wait
    assert d.pending().name == steps.CHECK_EXPORT.name


def _until_the_submit(d: Driver) -> None:
    """Past whatever holds the first submit back (a spread, a gate), if anything does."""
    while d.pending().kind == Kind.TIMER:
        d.fire_timer()


def _fail_every_attempt(d: Driver, reason: str = OUTAGE) -> dict[str, Any]:
    action = d.pending()
    assert action.kind == Kind.ACTIVITY
    assert action.retry is not None
    reply: dict[str, Any] = {}
    for _ in range(action.retry["maxNumberOfAttempts"]):
        reply = d.fail_attempt(reason)
    return reply


def test_the_outage_error_names_itself_through_the_hosts_failure_text():
    assert errors.is_storage_outage(Exception(OUTAGE + " \n Traceback ..."))
    assert not errors.is_storage_outage(Exception("Activity function 'x' failed: ValueError: b"))
    assert errors.StorageUnavailableError.__name__ in OUTAGE


def test_an_evidence_outage_longer_than_the_activity_retries_does_not_end_an_export(caplog):
    d = Driver("export_personal_data", _job().to_input())
    _exporting(d)
    with caplog.at_level(logging.INFO):
        reply = _fail_every_attempt(d)
    # Before: the DSR went on to finalize and ended failed (ActivityFailed) while Graph exported.
    wait = d.pending()
    assert wait.kind == Kind.TIMER, f"waits, not {wait}"
    assert reply["customStatus"]["phase"] == "exporting"
    assert "error" not in reply["customStatus"]
    expected = pacing.storage_wait(RID, 1)
    # Counted from the episode that saw the last attempt fail (the driver's clock is at the
    # host's retry timer, one retry interval later).
    retry = timedelta(seconds=pacing.ACTIVITY_FIRST_RETRY_SECONDS)
    assert wait.fire_at - d.now + retry == timedelta(seconds=expected)
    assert reply["customStatus"]["nextCheckAt"] == wait.fire_at.isoformat()
    assert "step_waits_for_storage" in caplog.text
    assert "step=check_export" in caplog.text
    d.fire_timer()
    again = d.pending()
    assert again.name == steps.CHECK_EXPORT.name, "the same check, after the wait"
    d.complete(answers.checked("complete", 1.0))
    reply = d.complete(answers.finalized({"blobCount": 1}), name=steps.FINALIZE_EXPORT.name)
    assert reply["output"]["phase"] == "completed"
    assert not d.activities(steps.SUBMIT_EXPORT.name)[1:], "one submit"


def test_a_check_that_fails_otherwise_still_ends_the_dsr_at_once():
    d = Driver("export_personal_data", _job().to_input())
    _exporting(d)
    _fail_every_attempt(d, "Activity function 'check_export' failed: ValueError: a bug")
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = d.complete(answers.finalized())
    assert reply["output"]["error"]["code"] == "ActivityFailed"


def _outlast_every_wait(d: Driver) -> list[timedelta]:
    """Fail the check through every wait the DSR allows; returns the waits."""
    waits = []
    for _ in range(pacing.STORAGE_RESUBMITS):
        _fail_every_attempt(d)
        timer = d.pending()
        assert timer.kind == Kind.TIMER
        retry = timedelta(seconds=pacing.ACTIVITY_FIRST_RETRY_SECONDS)
        waits.append(timer.fire_at - d.now + retry)
        d.fire_timer()
    _fail_every_attempt(d)
    return waits


def test_an_outage_outlasting_every_wait_ends_the_dsr_visibly_and_retry_resumes_the_export():
    d = Driver("export_personal_data", _job(callback_url=CALLBACK).to_input())
    _exporting(d, callbacks=True)
    started = d.now
    waits = _outlast_every_wait(d)
    assert waits == [
        timedelta(seconds=pacing.storage_wait(RID, n))
        for n in range(1, pacing.STORAGE_RESUBMITS + 1)
    ]
    assert timedelta(hours=8.5) < d.now - started < timedelta(hours=14)
    # The finalisation is tried (its own attempts), not waited out a second time.
    finalize = d.pending()
    assert finalize.name == steps.FINALIZE_EXPORT.name
    reply = d.complete(answers.finalized())
    callback = steps.SendCallback.from_dict(d.pending().input)
    assert callback.event["type"].endswith(".failed")
    assert callback.event["data"]["errorCode"] == "StorageUnavailable"
    reply = d.complete(answers.DELIVERED, name=steps.SEND_CALLBACK.name)
    output = reply["output"]
    assert (output["phase"], output["error"]["code"]) == ("failed", "StorageUnavailable")
    assert output["error"]["category"] == "storage"
    assert "retry" in output["error"]["hint"]
    assert (output["operationId"], output["container"]) == (answers.OPERATION_ID, CONTAINER)

    # retry: the next attempt takes up the container Graph writes into and finds its export.
    attempt = _job(callback_url=CALLBACK).next_attempt(output)
    assert (attempt.attempt, attempt.submit_attempt) == (2, 1)
    r = Driver("export_personal_data", attempt.to_input())
    r.episode()
    assert steps.SendCallback.from_dict(r.pending().input).event["type"] == "export.retried"
    r.complete(answers.DELIVERED)
    prepare = steps.PrepareContainer.from_dict(r.pending().input)
    assert container_name(RID, prepare.attempt) == CONTAINER
    r.complete(answers.prepared(CONTAINER, settle_seconds=0, request_info_exists=True))
    lookup = r.pending()
    assert lookup.name == steps.RECOVER_SUBMIT.name, "the known export, looked up"
    recovered = steps.ExportRecovered(
        operation_id=answers.OPERATION_ID,
        operation_url=answers.OPERATION_URL,
        submitted_at="2026-03-01T09:00:30+00:00",
        sas_expires_at="2026-04-30T09:00:00+00:00",
        retry_after_seconds=60,
    ).to_dict()
    reply = r.complete(recovered)
    r.complete(answers.DELIVERED, name=steps.SEND_CALLBACK.name)  # exporting
    r.fire_timer()
    r.complete(answers.checked("complete", 1.0), name=steps.CHECK_EXPORT.name)
    r.complete(answers.finalized({"blobCount": 1}), name=steps.FINALIZE_EXPORT.name)
    reply = r.complete(answers.DELIVERED, name=steps.SEND_CALLBACK.name)
    assert reply["output"]["phase"] == "completed"
    assert r.activities(steps.SUBMIT_EXPORT.name) == [], "no second export at Graph"


@pytest.mark.parametrize(
    ("ended", "resumes"),
    [
        ({"phase": "failed", "graphStatus": "running"}, True),
        ({"phase": "failed", "graphStatus": "complete"}, True),
        ({"phase": "failed", "graphStatus": None}, True),
        ({"phase": "failed", "graphStatus": "failed"}, False),  # Graph's export failed
        ({"phase": "timed_out", "graphStatus": "running"}, False),
        ({"phase": "failed", "graphStatus": "running", "operationId": None}, False),
        ({"phase": "failed", "graphStatus": "running", "container": "other"}, False),
        # The submit's record outlasted: Graph may have the export, the container tells.
        ({"operationId": None, "error": {"code": "StorageUnavailable"}}, True),
        ({"operationId": None, "error": {"code": "ActivityFailed"}}, False),
    ],
)
def test_a_retry_resumes_only_an_export_graph_still_has(ended: dict[str, Any], resumes: bool):
    output = {
        "phase": "failed",
        "attempt": 1,
        "operationId": answers.OPERATION_ID,
        "container": CONTAINER,
        "submitAttempt": 1,
        **ended,
    }
    attempt = _job().next_attempt(output)
    assert attempt.submit_attempt == (1 if resumes else 2)
    assert attempt.submit_attempt - attempt.submit_base == 1, "the never-posted budget is whole"
    assert attempt.operation_id is None, "the operation is found again, not assumed"


def test_finalisation_waits_out_a_storage_outage_rather_than_fail_the_dsr():
    d = Driver("export_personal_data", _job().to_input())
    _exporting(d)
    d.complete(answers.checked("complete", 1.0))
    assert d.pending().name == steps.FINALIZE_EXPORT.name
    reply = _fail_every_attempt(
        d, OUTAGE.replace(steps.CHECK_EXPORT.name, steps.FINALIZE_EXPORT.name)
    )
    # Before: FinalizeFailed, no manifest, the SAS left to expire.
    assert d.pending().kind == Kind.TIMER
    assert reply["customStatus"]["phase"] == "finalizing"
    d.fire_timer()
    reply = d.complete(answers.finalized({"blobCount": 1}), name=steps.FINALIZE_EXPORT.name)
    assert reply["output"]["phase"] == "completed"
    assert reply["output"]["sas"] == answers.REVOKED


def test_a_cancel_during_the_wait_ends_the_dsr_cancelled():
    d = Driver("export_personal_data", _job().to_input())
    _exporting(d)
    _fail_every_attempt(d)
    assert d.pending().kind == Kind.TIMER
    d.raise_event("cancel", {"reason": "withdrawn"})
    finalize = d.pending()
    assert finalize.name == steps.FINALIZE_EXPORT.name
    reply = d.complete(answers.finalized())
    assert reply["output"]["phase"] == "cancelled"


def test_the_activity_wrapper_raises_the_named_outage_for_storage_that_does_not_answer(
    user_function, swap
):
    from azure.core.exceptions import ServiceRequestError

    class _DownLog:
        def write(self, *args: Any) -> Any:
            raise ServiceRequestError("connection refused")

    swap(evidence_log=_DownLog())
    finished = steps.RecordFinished(request_id=RID, phase="failed", attempt=1)
    with pytest.raises(errors.StorageUnavailableError) as raised:
        user_function(steps.RECORD_FINISHED.name)(finished.to_dict())
    assert errors.is_storage_outage(Exception(f"{type(raised.value).__name__}: {raised.value}"))
    assert isinstance(raised.value.__cause__, ServiceRequestError)


def test_a_submit_whose_record_meets_an_outage_waits_and_recovers_the_export():
    """Graph accepted the export, then the evidence account stopped answering the submit's
    record through all its attempts: the DSR waits, finds Graph's receipt and recovers the
    export instead of ending (before: ActivityFailed, and a retry submitted a second export),
    without calling the submit again on the slot it spent (tests/unit/test_gate_recovery.py)."""
    d = Driver("export_personal_data", _job().to_input())
    d.episode()
    d.complete(answers.prepared(CONTAINER, settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    _until_the_submit(d)
    _fail_every_attempt(d, OUTAGE.replace(steps.CHECK_EXPORT.name, steps.SUBMIT_EXPORT.name))
    assert d.pending().kind == Kind.TIMER, "waits"
    d.fire_timer()
    assert d.pending().name == steps.PREPARE_CONTAINER.name, "the receipt, looked for"
    d.complete(answers.prepared(CONTAINER, settle_seconds=0, request_info_exists=True))
    recovered = steps.ExportRecovered(
        operation_id=answers.OPERATION_ID,
        operation_url=answers.OPERATION_URL,
        submitted_at="2026-03-01T09:00:30+00:00",
        sas_expires_at="2026-04-30T09:00:00+00:00",
        retry_after_seconds=60,
    ).to_dict()
    reply = d.complete(recovered, name=steps.RECOVER_SUBMIT.name)
    assert reply["customStatus"]["phase"] == "exporting"
    assert reply["customStatus"]["operationId"] == answers.OPERATION_ID
