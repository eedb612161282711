"""The orchestration's one way out: every ending, even a failed finalisation, is recorded."""

from __future__ import annotations

from datetime import timedelta

from dsr_export.domain import steps
from dsr_export.domain.job import ExportJob
from tests.replay import Driver

USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
CALLBACK = "https://acme.service-now.com/api/dsr/cb"
DELIVERED = steps.CallbackDelivery(delivered=True, status=204).to_dict()


def _driver() -> Driver:
    job = ExportJob(
        request_id="RITM0009",
        user=USER_ID,
        user_id=USER_ID,
        received_at="2026-03-01T09:00:00+00:00",
        regulation="gdpr",
        legal_deadline="2026-04-01T09:00:00+00:00",
        warning_at="2026-03-25T09:00:00+00:00",
        callback_url=CALLBACK,
    )
    return Driver("export_personal_data", job.to_input())


def _through_completion(d: Driver) -> None:
    d.episode()
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)  # accepted
    d.complete(
        steps.ContainerPrepared(container="dsr-ritm0009-x", settle_seconds=30).to_dict(),
        name=steps.PREPARE_CONTAINER.name,
    )
    d.fire_timer()
    d.complete(
        steps.ExportSubmitted(
            outcome=steps.Outcome.ACCEPTED,
            operation_id="op-9",
            operation_url="https://graph.microsoft.com/beta/dataPolicyOperations/op-9",
            retry_after_seconds=60,
            submitted_at=d.now.isoformat(),
            sas_expires_at=(d.now + timedelta(days=60)).isoformat(),
        ).to_dict(),
        name=steps.SUBMIT_EXPORT.name,
    )
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)  # exporting
    d.fire_timer()
    d.complete(
        steps.ExportChecked(status="complete", progress=1.0).to_dict(),
        name=steps.CHECK_EXPORT.name,
    )


def test_a_finalize_that_fails_every_attempt_ends_the_dsr_failed_and_the_ticket_hears():
    d = _driver()
    _through_completion(d)
    finalize = d.pending()
    assert finalize.name == steps.FINALIZE_EXPORT.name
    assert steps.FinalizeExport.from_dict(finalize.input).write_manifest is True
    assert finalize.retry is not None
    for _ in range(finalize.retry["maxNumberOfAttempts"]):
        reply = d.fail_attempt("ServiceResponseError: export account unreachable")
    # Not an unhandled orchestration failure: the callback goes out, then a recorded ending.
    assert reply["isDone"] is False
    callback = d.pending()
    assert callback.name == steps.SEND_CALLBACK.name
    event = steps.SendCallback.from_dict(callback.input).event
    assert event["type"] == "dsr.failed"
    assert event["data"]["errorCode"] == "FinalizeFailed"
    status = reply["customStatus"]
    assert status["phase"] == "failed"
    assert status["error"]["code"] == "FinalizeFailed"
    # The SAS could not be confirmed revoked: the status says when it expires instead.
    expires_at = steps.FinalizeExport.from_dict(finalize.input).sas_expires_at
    assert status["sas"] == {"revoked": False, "expiresAt": expires_at}

    reply = d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    assert reply["isDone"] is True
    output = reply["output"]
    assert output["phase"] == "failed"
    assert output["error"]["code"] == "FinalizeFailed"
    assert output["error"]["category"] == "storage"
    assert "completed" in output["error"]["message"]  # what it was about to record
    assert "manifest" not in output
    # finalize_export ran its attempts once: the ending does not run it again.
    assert len(d.activities(steps.FINALIZE_EXPORT.name)) == 1


def test_an_activity_failing_after_the_container_exists_still_finalizes_that_container():
    d = _driver()
    d.episode()
    d.complete(DELIVERED, name=steps.SEND_CALLBACK.name)
    d.complete(
        steps.ContainerPrepared(container="dsr-ritm0009-x", settle_seconds=30).to_dict(),
        name=steps.PREPARE_CONTAINER.name,
    )
    d.fire_timer()
    submit = d.pending()
    assert submit.retry is not None
    for _ in range(submit.retry["maxNumberOfAttempts"]):
        reply = d.fail_attempt("ServiceRequestError: storage unreachable")
    # The container is known although the failing step was later: the SAS is revoked.
    finalize = d.pending()
    assert finalize.name == steps.FINALIZE_EXPORT.name
    assert steps.FinalizeExport.from_dict(finalize.input).container == "dsr-ritm0009-x"
    assert reply["customStatus"]["phase"] == "finalizing"
