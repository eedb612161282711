"""The DSR export orchestration: prepare, submit, wait for Graph, finish.

Deterministic by construction: no I/O, no clock but ``context.current_utc_datetime``, no
environment. Every step that touches the world is an activity; every wait is a durable timer.
Its input and output, its custom status and every activity result it sees are non-secret.

Outcomes: ``completed``, ``failed`` (with Graph's error), ``timed_out`` or ``cancelled``. Whatever
happens after the submit, the SAS is revoked (or its expiry recorded) before the end.

When the request named a ``callbackUrl``, the ticket hears of it (accepted, exporting, the
outcome, the legal deadline's warning and overdue) through ``send_callback``; a callback that
keeps failing is recorded in the status and the result and never fails the DSR.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from dsr_export import callbacks
from dsr_export.deadlines import view
from dsr_export.errors import submit_outcome_unknown
from dsr_export.job import CANCEL_EVENT, ExportJob, next_wait
from dsr_export.logs import log_event
from dsr_export.redaction import redact
from dsr_export.status import Phase

bp = df.Blueprint()

#: Activities raise only on unexpected, presumably transient trouble (storage hiccup, worker
#: recycled); Graph's answers come back as results the orchestrator decides on.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=5
)

#: Graph throttling or outages before the export is submitted (user lookup, submit) are waited
#: out this many times (about 4 hours with the doubling back-off); then the DSR fails and the
#: ticket hears about it. Once submitted, polling waits them out until the overall time-out.
GRAPH_STEP_ATTEMPTS = 8

#: Waits between callback attempts (a real back-off; the 1.x SDK's retry options have none):
#: four attempts over about 12 minutes, short enough not to hold up the export for long.
CALLBACK_BACKOFF_SECONDS = (30, 120, 600)

_TERMINAL_EVENTS = {
    Phase.COMPLETED: callbacks.COMPLETED,
    Phase.CANCELLED: callbacks.CANCELLED,
    Phase.FAILED: callbacks.FAILED,
    Phase.TIMED_OUT: callbacks.FAILED,
}

Step = Generator[Any, Any, Any]


@bp.orchestration_trigger(context_name="context")
def export_personal_data(context: df.DurableOrchestrationContext) -> Step:
    """One DSR, from an accepted request to a terminal result."""
    job = ExportJob.from_input(context.get_input())
    if job.started_at is None:
        job = job.replace(started_at=context.current_utc_datetime.isoformat())
        _status(context, job, Phase.ACCEPTED)
        job = yield from _notify(context, job, callbacks.ACCEPTED, Phase.ACCEPTED)
    # One waiter per execution, raced against every timer. A fresh waiter per timer would leave
    # the losers open, and the SDK hands an arriving event to the newest open waiter: one whose
    # race is already over, so the cancel would be swallowed.
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    try:
        if job.operation_id is None:
            job, failure = yield from _submit(context, job, cancel)
            if failure is not None:
                return failure
        return (yield from _poll(context, job, cancel))
    except Exception as exc:  # noqa: BLE001 - an activity failed all its attempts
        error = {"code": "ActivityFailed", "message": _first_line(exc)}
        return (yield from _finish(context, job, Phase.FAILED, error=error))


def _submit(context: df.DurableOrchestrationContext, job: ExportJob, cancel: Any) -> Step:
    """Resolve the user, prepare the container and submit; returns (job, failure result)."""
    if job.user_id is None:
        _status(context, job, Phase.RESOLVING_USER)
        found = yield from _graph_step(
            context, "resolve_user", {"requestId": job.request_id, "user": job.user}
        )
        if found["outcome"] != "ok":
            return job, (yield from _finish(context, job, Phase.FAILED, error=found["error"]))
        job = job.replace(user_id=found["userId"])

    _status(context, job, Phase.PREPARING_STORAGE)
    prepared = yield context.call_activity_with_retry(
        "prepare_container", ACTIVITY_RETRY, {"requestId": job.request_id}
    )
    if prepared.get("outcome") == "failed":
        return job, (yield from _finish(context, job, Phase.FAILED, error=prepared["error"]))
    job = job.replace(container=prepared["container"])
    if prepared["requestInfoExists"]:
        return job, (
            yield from _finish(
                context, job, Phase.FAILED, error=submit_outcome_unknown(prepared["container"])
            )
        )
    if prepared["settleSeconds"]:
        # Also the last chance to honour a cancel before anything reaches Graph.
        settled_at = _after(context, prepared["settleSeconds"])
        cancelled = yield from _wait_or_cancel(context, settled_at, cancel)
        if cancelled is not None:
            return job, (yield from _finish(context, job, Phase.CANCELLED, error=cancelled))

    _status(context, job, Phase.SUBMITTING)
    submitted = yield from _graph_step(
        context,
        "submit_export",
        {"requestId": job.request_id, "userId": job.user_id, "container": job.container},
    )
    if submitted["outcome"] != "accepted":
        return job, (yield from _finish(context, job, Phase.FAILED, error=submitted["error"]))
    job = job.replace(
        operation_id=submitted["operationId"],
        operation_url=submitted["operationUrl"],
        submitted_at=submitted["submittedAt"],
        sas_expires_at=submitted["sasExpiresAt"],
        wait_seconds=submitted["retryAfterSeconds"],
    )
    _status(context, job, Phase.EXPORTING)
    job = yield from _notify(context, job, callbacks.EXPORTING, Phase.EXPORTING)
    return job, None


def _graph_step(
    context: df.DurableOrchestrationContext, activity: str, payload: dict[str, Any]
) -> Step:
    """Call a Graph activity; wait out its ``retry`` answers on durable timers, boundedly.

    Returns the last answer: ``ok``/``accepted``, ``failed``, or ``retry`` (with its error)
    when the attempts ran out.
    """
    answer = yield context.call_activity_with_retry(activity, ACTIVITY_RETRY, payload)
    for attempt in range(1, GRAPH_STEP_ATTEMPTS):
        if answer["outcome"] != "retry":
            break
        wait = max(answer["retryAfterSeconds"], 60 * 2 ** (attempt - 1))
        yield context.create_timer(_after(context, wait))
        answer = yield context.call_activity_with_retry(activity, ACTIVITY_RETRY, payload)
    return answer


def _poll(context: df.DurableOrchestrationContext, job: ExportJob, cancel: Any) -> Step:
    """Wait with durable timers and check the operation, until it ends or time runs out."""
    for _ in range(job.policy.rounds_per_history):
        job = yield from _legal_clock(context, job)
        now = context.current_utc_datetime
        if now >= job.deadline():
            error = {
                "code": "ExportTimedOut",
                "message": f"Graph did not finish within {job.policy.timeout_days} days",
            }
            return (yield from _finish(context, job, Phase.TIMED_OUT, error=error))
        fire_at = min(now + timedelta(seconds=job.wait_seconds), job.deadline())
        legal_moment = _next_legal_moment(job, now)
        if legal_moment is not None:
            fire_at = min(fire_at, legal_moment)
        _status(context, job, Phase.EXPORTING, nextCheckAt=fire_at.isoformat())
        # A cancel raised earlier (even before the submit) is buffered and wins at once.
        cancelled = yield from _wait_or_cancel(context, fire_at, cancel)
        if cancelled is not None:
            return (yield from _finish(context, job, Phase.CANCELLED, error=cancelled))

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
    # Bounded history: start a fresh execution carrying the state. Events still undelivered
    # are dropped with this execution, so give a cancel that came during the last round its
    # chance first (a zero-length race delivers anything already received).
    cancelled = yield from _wait_or_cancel(context, context.current_utc_datetime, cancel)
    if cancelled is not None:
        return (yield from _finish(context, job, Phase.CANCELLED, error=cancelled))
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
                "audit": _audit_record(context, job, phase, error),
            },
        )
        result["manifest"] = finished.get("manifest")
        result["sas"] = finished["sas"]
    result["completedAt"] = context.current_utc_datetime.isoformat()
    # The terminal status is complete before the ticket's callback goes out: a ticket that
    # reads the status when it hears "completed" finds the manifest and the SAS state there.
    terminal = {k: result[k] for k in ("manifest", "sas", "error", "completedAt") if result.get(k)}
    context.set_custom_status({**_status_body(job, phase), **terminal})
    level = logging.INFO if phase is Phase.COMPLETED else logging.WARNING
    _log(context, "dsr_finished", level, job, phase=phase.value, code=(error or {}).get("code"))
    job = yield from _notify(
        context,
        job,
        _TERMINAL_EVENTS[phase],
        phase,
        manifest=result.get("manifest"),
        completedAt=result["completedAt"],
        errorCode=(error or {}).get("code"),
    )
    if job.failed_callbacks:
        context.set_custom_status({**_status_body(job, phase), **terminal})
    result.update(_legal_body(job))
    return {key: value for key, value in result.items() if value is not None}


def _audit_record(
    context: df.DurableOrchestrationContext,
    job: ExportJob,
    phase: Phase,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the privacy team keeps as evidence: the ticket, the legal clock, the timeline and
    the outcome (the activity adds the manifest summary and the SAS revocation)."""
    return {
        "requestId": job.request_id,
        "outcome": phase.value,
        "regulation": job.regulation,
        "receivedAt": job.received_at,
        "deadline": job.legal_deadline,
        "requestedBy": job.requested_by,
        "acceptedAt": job.started_at,
        "submittedAt": job.submitted_at,
        "operationId": job.operation_id,
        "finishedAt": context.current_utc_datetime.isoformat(),
        "error": {k: (error or {}).get(k) for k in ("code", "category")} if error else None,
    }


def _wait_or_cancel(context: df.DurableOrchestrationContext, fire_at: Any, cancel: Any) -> Step:
    """Wait until ``fire_at`` unless a cancel comes first; returns the cancel's error or None."""
    timer = context.create_timer(fire_at)
    winner = yield context.task_any([timer, cancel])
    if winner != cancel:
        return None
    data = cancel.result
    if isinstance(data, str):
        # The extension stores event data as the JSON text it was sent (SDK issue #295).
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    reason = data.get("reason") if isinstance(data, dict) else None
    return {"code": "Cancelled", "message": str(reason or "cancelled")[:500]}


def _legal_clock(context: df.DurableOrchestrationContext, job: ExportJob) -> Step:
    """Raise the deadline warning, and later the overdue notice, once each."""
    now, due = context.current_utc_datetime, job.legal_deadline_at()
    if due is None:
        return job
    warn_at = job.warning_due_at()
    if not job.overdue_noted and now >= due:
        # Overdue implies the warning: a DSR received long ago is told once, not twice.
        job = job.replace(overdue_noted=True, warned=True)
        _log(context, "deadline_overdue", logging.ERROR, job)
        return (yield from _notify(context, job, callbacks.DEADLINE_OVERDUE, Phase.EXPORTING))
    if not job.warned and warn_at is not None and now >= warn_at:
        job = job.replace(warned=True)
        _log(context, "deadline_warning", logging.WARNING, job)
        return (yield from _notify(context, job, callbacks.DEADLINE_WARNING, Phase.EXPORTING))
    return job


def _next_legal_moment(job: ExportJob, now: Any) -> Any:
    """The next warning or overdue moment still ahead, so a poll wakes up for it."""
    moments = []
    warn_at, due = job.warning_due_at(), job.legal_deadline_at()
    if warn_at is not None and not job.warned:
        moments.append(warn_at)
    if due is not None and not job.overdue_noted:
        moments.append(due)
    ahead = [moment for moment in moments if moment > now]
    return min(ahead) if ahead else None


def _notify(
    context: df.DurableOrchestrationContext,
    job: ExportJob,
    event_type: str,
    phase: Phase,
    **data: Any,
) -> Step:
    """Send one callback with back-off; a final failure is recorded, never raised."""
    if job.callback_url is None:
        return job
    now = context.current_utc_datetime
    event = callbacks.build_event(event_type, now, {**_event_data(job, phase, now), **data})
    payload = {
        "requestId": job.request_id,
        "url": job.callback_url,
        # Stable across attempts: receivers deduplicate on it. Deterministic under replay.
        "messageId": f"msg_{context.new_uuid()}",
        "event": event,
    }
    outcome: dict[str, Any] = {"delivered": False, "permanent": False}
    for delay in (*CALLBACK_BACKOFF_SECONDS, None):
        try:
            outcome = yield context.call_activity("send_callback", payload)
        except Exception:  # noqa: BLE001 - the activity raises only for retryable failures
            outcome = {"delivered": False, "permanent": False}
        if outcome["delivered"] or outcome.get("permanent") or delay is None:
            break
        yield context.create_timer(_after(context, delay))
    if outcome["delivered"]:
        return job
    _log(context, "callback_failed", logging.WARNING, job, event_type=event_type)
    return job.replace(failed_callbacks=(*job.failed_callbacks, event_type))


def _event_data(job: ExportJob, phase: Phase, now: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "requestId": job.request_id,
        "phase": phase.value,
        "operationId": job.operation_id,
        "graphStatus": job.graph_status,
        "progress": job.progress,
        "submittedAt": job.submitted_at,
    }
    due = job.legal_deadline_at()
    if due is not None:
        data.update(view(due, job.warning_due_at(), now).to_dict())
    return data


def _legal_body(job: ExportJob) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receivedAt": job.received_at,
        "regulation": job.regulation,
        "deadline": job.legal_deadline,
        "warningAt": job.warning_at,
    }
    if job.failed_callbacks:
        body["callbacks"] = {"failed": list(job.failed_callbacks)}
    return body


def _log(
    context: df.DurableOrchestrationContext,
    event: str,
    level: int,
    job: ExportJob,
    **fields: Any,
) -> None:
    if not context.is_replaying:  # a replay re-runs this code; the line was written already
        log_event(
            event,
            level=level,
            request_id=job.request_id,
            instance_id=context.instance_id,
            deadline=job.legal_deadline,
            **fields,
        )


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
        **_legal_body(job),
    }
    return {key: value for key, value in body.items() if value is not None}


def _after(context: df.DurableOrchestrationContext, seconds: int) -> Any:
    return context.current_utc_datetime + timedelta(seconds=seconds)


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
