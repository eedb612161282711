"""The DSR export orchestration: prepare, submit, wait for Graph, finish.

Deterministic by construction: no I/O, no clock but ``context.current_utc_datetime``, no
environment. Every step that touches the world is an activity; every wait is a durable timer.
Its input and output, its custom status and every activity result it sees are non-secret.

Outcomes: ``completed``, ``failed`` (with Graph's error), ``timed_out`` or ``cancelled``. Whatever
happens after the submit, the SAS is revoked (or its expiry recorded) before the end.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from dsr_export.job import CANCEL_EVENT, ExportJob, next_wait
from dsr_export.redaction import redact
from dsr_export.status import Phase

bp = df.Blueprint()

#: Activities raise only on unexpected, presumably transient trouble (storage hiccup, worker
#: recycled); Graph's answers come back as results the orchestrator decides on.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=5
)

#: Graph throttling or outages at submit are waited out this many times (about 4 hours with the
#: doubling back-off) before the DSR fails and the ticket hears about it.
SUBMIT_ATTEMPTS = 8

Step = Generator[Any, Any, Any]


@bp.orchestration_trigger(context_name="context")
def export_personal_data(context: df.DurableOrchestrationContext) -> Step:
    """One DSR, from an accepted request to a terminal result."""
    job = ExportJob.from_input(context.get_input())
    if job.started_at is None:
        job = job.replace(started_at=context.current_utc_datetime.isoformat())
    try:
        if job.operation_id is None:
            job, failure = yield from _submit(context, job)
            if failure is not None:
                return failure
        return (yield from _poll(context, job))
    except Exception as exc:  # noqa: BLE001 - an activity failed all its attempts
        error = {"code": "ActivityFailed", "message": _first_line(exc)}
        return (yield from _finish(context, job, Phase.FAILED, error=error))


def _submit(context: df.DurableOrchestrationContext, job: ExportJob) -> Step:
    """Resolve the user, prepare the container and submit; returns (job, failure result)."""
    if job.user_id is None:
        _status(context, job, Phase.RESOLVING_USER)
        found = yield context.call_activity_with_retry(
            "resolve_user", ACTIVITY_RETRY, {"requestId": job.request_id, "user": job.user}
        )
        if found["outcome"] != "ok":
            return job, (yield from _finish(context, job, Phase.FAILED, error=found["error"]))
        job = job.replace(user_id=found["userId"])

    _status(context, job, Phase.PREPARING_STORAGE)
    prepared = yield context.call_activity_with_retry(
        "prepare_container", ACTIVITY_RETRY, {"requestId": job.request_id}
    )
    job = job.replace(container=prepared["container"])
    if prepared["requestInfoExists"]:
        return job, (yield from _finish(context, job, Phase.FAILED, error=_ambiguous(job)))
    if prepared["settleSeconds"]:
        yield context.create_timer(_after(context, prepared["settleSeconds"]))

    _status(context, job, Phase.SUBMITTING)
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        submitted = yield context.call_activity_with_retry(
            "submit_export",
            ACTIVITY_RETRY,
            {"requestId": job.request_id, "userId": job.user_id, "container": job.container},
        )
        if submitted["outcome"] != "retry" or attempt == SUBMIT_ATTEMPTS:
            break
        wait = max(submitted["retryAfterSeconds"], 60 * 2 ** (attempt - 1))
        yield context.create_timer(_after(context, wait))
    if submitted["outcome"] != "accepted":
        return job, (yield from _finish(context, job, Phase.FAILED, error=submitted["error"]))
    job = job.replace(
        operation_id=submitted["operationId"],
        operation_url=submitted["operationUrl"],
        submitted_at=submitted["submittedAt"],
        sas_expires_at=submitted["sasExpiresAt"],
        wait_seconds=submitted["retryAfterSeconds"],
    )
    return job, None


def _poll(context: df.DurableOrchestrationContext, job: ExportJob) -> Step:
    """Wait with durable timers and check the operation, until it ends or time runs out."""
    for _ in range(job.policy.rounds_per_history):
        now = context.current_utc_datetime
        if now >= job.deadline():
            error = {
                "code": "ExportTimedOut",
                "message": f"Graph did not finish within {job.policy.timeout_days} days",
            }
            return (yield from _finish(context, job, Phase.TIMED_OUT, error=error))
        fire_at = min(now + timedelta(seconds=job.wait_seconds), job.deadline())
        _status(context, job, Phase.EXPORTING, nextCheckAt=fire_at.isoformat())
        timer = context.create_timer(fire_at)
        cancel = context.wait_for_external_event(CANCEL_EVENT)
        winner = yield context.task_any([timer, cancel])
        if winner == cancel:
            reason = (
                (cancel.result or {}).get("reason") if isinstance(cancel.result, dict) else None
            )
            error = {"code": "Cancelled", "message": reason or "cancelled"}
            return (yield from _finish(context, job, Phase.CANCELLED, error=error))

        checked = yield context.call_activity_with_retry(
            "check_export",
            ACTIVITY_RETRY,
            {"requestId": job.request_id, "operationUrl": job.operation_url},
        )
        cap = job.policy.max_poll_interval_seconds
        job = job.replace(poll_round=job.poll_round + 1)
        match checked["outcome"]:
            case "retry":
                wait = next_wait(
                    job.wait_seconds, cap=cap, retry_after=checked["retryAfterSeconds"]
                )
                job = job.replace(wait_seconds=wait)
            case "failed":
                return (yield from _finish(context, job, Phase.FAILED, error=checked["error"]))
            case _:
                job = job.replace(
                    graph_status=checked["status"],
                    progress=checked.get("progress"),
                    wait_seconds=next_wait(job.wait_seconds, cap=cap),
                )
                if checked["status"] == "complete":
                    return (yield from _finish(context, job, Phase.COMPLETED))
                if checked["status"] == "failed":
                    error = {
                        "code": "ExportFailed",
                        "message": "Graph reported the export operation as failed",
                    }
                    return (yield from _finish(context, job, Phase.FAILED, error=error))
    # Bounded history: start a fresh execution carrying the state.
    _status(context, job, Phase.EXPORTING)
    context.continue_as_new(job.to_input())
    return None


def _finish(
    context: df.DurableOrchestrationContext,
    job: ExportJob,
    phase: Phase,
    *,
    error: dict[str, Any] | None = None,
) -> Step:
    """Manifest (on success), revoke the SAS, and the terminal result."""
    result: dict[str, Any] = {
        "requestId": job.request_id,
        "phase": phase.value,
        "operationId": job.operation_id,
        "container": job.container,
        "submittedAt": job.submitted_at,
        "graphStatus": job.graph_status,
        "progress": job.progress,
        "error": error,
    }
    if job.container is not None:
        _status(context, job, Phase.FINALIZING)
        finished = yield context.call_activity_with_retry(
            "finalize_export",
            ACTIVITY_RETRY,
            {
                "requestId": job.request_id,
                "container": job.container,
                "writeManifest": phase is Phase.COMPLETED,
                "sasExpiresAt": job.sas_expires_at,
            },
        )
        result["manifest"] = finished.get("manifest")
        result["sas"] = finished["sas"]
    result["completedAt"] = context.current_utc_datetime.isoformat()
    context.set_custom_status(_status_body(job, phase))
    return {key: value for key, value in result.items() if value is not None}


def _status(
    context: df.DurableOrchestrationContext, job: ExportJob, phase: Phase, **extra: Any
) -> None:
    context.set_custom_status({**_status_body(job, phase), **extra})


def _status_body(job: ExportJob, phase: Phase) -> dict[str, Any]:
    body = {
        "phase": phase.value,
        "requestId": job.request_id,
        "container": job.container,
        "operationId": job.operation_id,
        "submittedAt": job.submitted_at,
        "graphStatus": job.graph_status,
        "progress": job.progress,
        "pollRound": job.poll_round,
    }
    return {key: value for key, value in body.items() if value is not None}


def _after(context: df.DurableOrchestrationContext, seconds: int) -> Any:
    return context.current_utc_datetime + timedelta(seconds=seconds)


def _ambiguous(job: ExportJob) -> dict[str, str]:
    return {
        "code": "SubmitOutcomeUnknown",
        "message": (
            f"container {job.container} already holds RequestInfo.json: an earlier submit for "
            "this DSR reached Graph but its operation id was lost. Not submitting again (that "
            "would start a duplicate export) and the SAS is revoked, so the lost export cannot "
            "write either. Send the DSR again under a new requestId."
        ),
    }


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
