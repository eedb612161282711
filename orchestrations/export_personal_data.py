"""The DSR export orchestration: prepare, submit, wait for Graph, finish.

Deterministic by construction: no I/O, no clock but ``context.current_utc_datetime``, no
environment; it imports the pure domain layer only (``make lint`` checks). Every step that
touches the world is an activity, called through the step contract
(:mod:`dsr_export.domain.steps`); every wait is a durable timer. Its input and output, its
custom status and every activity result it sees are non-secret.

One way out: each phase either carries on (returns the job) or returns an :class:`Ending`, and
:func:`_finish` runs once, outside the ``try``, for every ending there is, an activity that
failed all its attempts included. So whatever happens after the submit, the SAS is revoked (or
its expiry recorded) and the ticket hears. Outcomes: ``completed``, ``failed`` (with Graph's
error), ``timed_out`` or ``cancelled``.

When the request named a ``callbackUrl``, the ticket hears of it (accepted, exporting, the
outcome, the legal deadline's warning and overdue) through ``send_callback``; a callback that
keeps failing is recorded in the status and the result and never fails the DSR.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import azure.durable_functions as df

from dsr_export.domain import errors, events, pacing, steps
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused
from dsr_export.domain.job import CANCEL_EVENT, EXTEND_EVENT, Ending, ExportJob, next_wait
from dsr_export.domain.logs import log_event
from dsr_export.domain.status import Phase
from dsr_export.domain.steps import Outcome
from orchestrations.callbacks import deliver

bp = df.Blueprint()

#: Activities raise only on unexpected, presumably transient trouble (storage hiccup, worker
#: recycled); Graph's answers come back as results the orchestrator decides on.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=5
)

#: A submit Graph never posted (its receipt is in the container, the operation unknown) is
#: tried again in a fresh container, at most this many submits in all.
SUBMIT_ATTEMPTS = 5
#: Waits between lookups of a lost submit's receipt: five lookups over about 15 minutes.
RECOVERY_WAITS = (60, 120, 240, 480)


_TERMINAL_EVENTS = {
    Phase.COMPLETED: events.COMPLETED,
    Phase.CANCELLED: events.CANCELLED,
    Phase.FAILED: events.FAILED,
    Phase.TIMED_OUT: events.FAILED,
}

Flow = Generator[Any, Any, Any]
R = TypeVar("R", bound=steps.Wire)


class _Restart:
    """Returned by a phase that wants a fresh execution (bounded history), state carried on."""


RESTART = _Restart()


@dataclass
class _Latest:
    """The latest job, so an ending reached by an exception still knows the container; and the
    external events it waits for, raced against every timer.

    One waiter per event name per execution, never made again: the SDK keeps an event that
    arrives while no waiter of its name is open in one slot per name, and that slot completes
    *every* later waiter of the name (Azure/azure-functions-durable-python#507), so a second
    waiter would take a stale event for a new one. The cancel waiter lives as long as its
    execution. The extend waiter is a nudge: once it fired, the DSR reads the asks from its
    evidence, applies the new ones and continues as new, where a fresh execution has a fresh
    waiter (``extend_spent``).
    """

    job: ExportJob
    cancel: Any = None
    extend: Any = None
    extend_spent: bool = False


@bp.orchestration_trigger(context_name="context")
def export_personal_data(context: df.DurableOrchestrationContext) -> Flow:
    """One DSR, from an accepted request to a terminal result."""
    latest = _Latest(ExportJob.from_input(context.get_input()))
    continued = latest.job.started_at is not None
    if not continued:
        latest.job = latest.job.replace(started_at=context.current_utc_datetime.isoformat())
        _status(context, latest.job, Phase.ACCEPTED)
        # A retried DSR tells the ticket it runs again, not that it was accepted anew.
        first = events.ACCEPTED if latest.job.attempt == 1 else events.RETRIED
        latest.job = yield from _notify(
            context, latest.job, first, Phase.ACCEPTED, attempt=latest.job.attempt
        )
    latest.cancel = context.wait_for_external_event(CANCEL_EVENT)
    latest.extend = context.wait_for_external_event(EXTEND_EVENT)
    ending: Ending | _Restart | None
    try:
        ending = None
        if continued and latest.job.legal_deadline is not None:
            # The status carries on from the last execution while the asks are read (a fresh
            # execution starts with none, which would read as "accepted").
            _status(context, latest.job, _running_phase(latest.job))
            # An ask whose event was dropped with the last execution is in the evidence.
            yield from _take_asks(context, latest)
        if latest.job.operation_id is None:
            ending = yield from _submit(context, latest)
        if ending is None and latest.job.operation_id is not None:
            ending = yield from _poll(context, latest)
    except Exception as exc:  # noqa: BLE001 - an activity failed all its attempts
        ending = Ending(Phase.FAILED, errors.activity_failed(exc))
    if ending is None or ending is RESTART:
        # Bounded history: a fresh execution carries the state on.
        _status(context, latest.job, _running_phase(latest.job))
        context.continue_as_new(latest.job.to_input())
        return None
    assert isinstance(ending, Ending)
    return (yield from _finish(context, latest, ending))


def _running_phase(job: ExportJob) -> Phase:
    """The phase a running DSR shows between steps: what it waits for."""
    if job.operation_id:
        return Phase.EXPORTING
    return Phase.SUBMITTING if job.user_id else Phase.RESOLVING_USER


def _call(
    context: df.DurableOrchestrationContext, step: steps.Step[Any, R], payload: steps.Wire
) -> Flow:
    """Call ``step`` with the standard retry options; returns its typed result."""
    raw = yield context.call_activity_with_retry(step.name, ACTIVITY_RETRY, payload.to_dict())
    result: R = step.result_type.from_dict(raw)
    return result


def _submit(context: df.DurableOrchestrationContext, latest: _Latest) -> Flow:
    """Resolve the user, prepare the container and submit, recovering a submit whose answer
    was lost; returns an Ending, RESTART (continue as new), or None to poll on."""
    if latest.job.user_id is None:
        _status(context, latest.job, Phase.RESOLVING_USER)
        found = yield from _graph_step(
            context,
            latest,
            steps.RESOLVE_USER,
            steps.ResolveUser(latest.job.request_id, latest.job.user),
        )
        if not isinstance(found, steps.UserResolved):
            return found
        if found.outcome is not Outcome.OK:
            return Ending(Phase.FAILED, found.error)
        latest.job = latest.job.replace(user_id=found.user_id)

    while True:
        job = latest.job
        _status(context, job, Phase.PREPARING_STORAGE)
        prepared = yield from _call(
            context,
            steps.PREPARE_CONTAINER,
            steps.PrepareContainer(job.request_id, attempt=job.submit_attempt),
        )
        if prepared.outcome is Outcome.FAILED:
            return Ending(Phase.FAILED, prepared.error)
        job = latest.job = job.replace(container=prepared.container)
        assert job.user_id is not None and job.container is not None  # noqa: PT018
        if not prepared.request_info_exists:
            # The policy settles; a first submit is also held back a little, differently for
            # each DSR, so a burst reaches Graph spread out. The last chance to cancel, too.
            delay = prepared.settle_seconds
            if job.submit_attempt == 1:
                delay += pacing.first_submit_delay(job.request_id)
            if delay:
                waited = yield from _wait_or_cancel(context, _after(context, delay), latest)
                if waited is not None:
                    return _interrupted(waited)
            _status(context, job, Phase.SUBMITTING)
            submitted = yield from _graph_step(
                context,
                latest,
                steps.SUBMIT_EXPORT,
                steps.SubmitExport(job.request_id, job.user_id, job.container),
            )
            if not isinstance(submitted, steps.ExportSubmitted):
                return submitted
            if submitted.outcome is Outcome.ACCEPTED:
                return (yield from _exporting(context, latest, submitted, recovered=False))
            if submitted.outcome is Outcome.RESUBMIT:
                waited = yield from _wait_for_storage(context, latest, submitted.error)
                if waited is not None:
                    return waited
                continue
            if submitted.outcome is not Outcome.UNKNOWN:
                return Ending(Phase.FAILED, submitted.error)
        # Graph's receipt is in the container but we hold no operation id: find the export.
        _status(context, latest.job, Phase.SUBMITTING)
        recovered = yield from _recover(context, latest)
        if not isinstance(recovered, steps.ExportRecovered):
            return recovered
        if recovered.outcome is Outcome.OK:
            return (yield from _exporting(context, latest, recovered, recovered=True))
        if recovered.outcome is Outcome.FAILED:
            return Ending(Phase.FAILED, recovered.error)
        # Graph's word: no such operation, the command was never posted. Once more, elsewhere.
        job = latest.job
        if job.submit_attempt - job.submit_base - job.storage_resubmits >= SUBMIT_ATTEMPTS:
            return Ending(Phase.FAILED, errors.never_posted(SUBMIT_ATTEMPTS))
        _log(context, "submit_restarted", logging.WARNING, latest.job)
        latest.job = latest.job.replace(
            submit_attempt=latest.job.submit_attempt + 1, container=None
        )


def _wait_for_storage(
    context: df.DurableOrchestrationContext, latest: _Latest, error: errors.ErrorDoc | None
) -> Flow:
    """The export storage was down when Graph checked the SAS (and the app could not reach it
    either): wait, doubling, then submit again into a fresh container (Graph may have left a
    partial receipt in this one). Returns an Ending after the last allowed wait, or a cancel."""
    job = latest.job
    resubmit = job.storage_resubmits + 1
    if resubmit > pacing.STORAGE_RESUBMITS:
        return Ending(Phase.FAILED, errors.storage_unavailable(job.storage_resubmits, error))
    wait = pacing.storage_wait(job.request_id, resubmit)
    _log(
        context,
        "submit_waits_for_storage",
        logging.WARNING,
        job,
        resubmit=resubmit,
        wait_seconds=wait,
    )
    fire_at = _after(context, wait)
    _status(context, job, Phase.SUBMITTING, nextCheckAt=fire_at.isoformat())
    cancelled = yield from _wait_or_cancel(context, fire_at, latest)
    if cancelled is not None:
        return Ending(Phase.CANCELLED, cancelled)
    latest.job = latest.job.replace(
        submit_attempt=latest.job.submit_attempt + 1, container=None, storage_resubmits=resubmit
    )
    return None


def _recover(context: df.DurableOrchestrationContext, latest: _Latest) -> Flow:
    """Look the lost submit up by its receipt, a few times over some minutes.

    Graph may not show a command it has just accepted; only an answer of ``absent`` that
    persists over every lookup counts as Graph's word that the export does not exist.
    """
    job = latest.job
    assert job.user_id is not None and job.container is not None  # noqa: PT018
    found: Any = None
    for index, wait in enumerate((0, *RECOVERY_WAITS)):
        if wait:
            stretched = pacing.spread(wait, job.request_id, index, "recovery")
            waited = yield from _wait_or_cancel(context, _after(context, stretched), latest)
            if waited is not None:
                return _interrupted(waited)
        lookup = steps.RecoverSubmit(
            job.request_id, job.user_id, job.container, final=index == len(RECOVERY_WAITS)
        )
        found = yield from _graph_step(context, latest, steps.RECOVER_SUBMIT, lookup)
        if not isinstance(found, steps.ExportRecovered) or found.outcome is not Outcome.ABSENT:
            return found
    return found


def _exporting(
    context: df.DurableOrchestrationContext,
    latest: _Latest,
    answer: steps.ExportSubmitted | steps.ExportRecovered,
    *,
    recovered: bool,
) -> Flow:
    """The export is Graph's now: remember the operation, tell the ticket, poll on."""
    job = latest.job.replace(
        operation_id=answer.operation_id,
        operation_url=answer.operation_url,
        submitted_at=answer.submitted_at,
        sas_expires_at=answer.sas_expires_at,
        wait_seconds=answer.retry_after_seconds or 60,
    )
    if recovered:
        _log(context, "submit_recovered", logging.INFO, job, operation_id=job.operation_id)
    _status(context, job, Phase.EXPORTING)
    latest.job = yield from _notify(context, job, events.EXPORTING, Phase.EXPORTING)
    return None


def _graph_step(
    context: df.DurableOrchestrationContext,
    latest: _Latest,
    step: steps.Step[Any, R],
    payload: steps.Wire,
) -> Flow:
    """Call a Graph step; wait out its ``retry`` answers on durable timers until the DSR's own
    time-out, with jittered back-off (Retry-After the minimum).

    Returns the answer (``ok``/``accepted``, ``failed``, ...), an Ending (cancelled, or timed
    out while Graph kept refusing), or RESTART after a history's worth of retries.
    """
    answer = yield from _call(context, step, payload)
    rounds = 0
    while answer.outcome is Outcome.RETRY:
        job = latest.job
        if context.current_utc_datetime >= job.give_up_at():
            error = errors.gave_up_waiting(job.policy.timeout_days, answer.error)
            return Ending(Phase.TIMED_OUT, error)
        if rounds >= job.policy.rounds_per_history:
            return RESTART
        job = latest.job = job.replace(throttle_round=job.throttle_round + 1)
        wait = pacing.retry_wait(job.request_id, job.throttle_round, answer.retry_after_seconds)
        fire_at = min(_after(context, wait), job.give_up_at())
        waited = yield from _wait_or_cancel(context, fire_at, latest)
        if waited is not None:
            return _interrupted(waited)
        answer = yield from _call(context, step, payload)
        rounds += 1
    latest.job = latest.job.replace(throttle_round=0)
    return answer


def _poll(context: df.DurableOrchestrationContext, latest: _Latest) -> Flow:
    """Wait with durable timers and check the operation, until it ends or time runs out.

    Returns an Ending, or None after ``rounds_per_history`` rounds (continue as new).
    """
    job = latest.job
    for _ in range(job.policy.rounds_per_history):
        job = latest.job = yield from _legal_clock(context, job)
        now = context.current_utc_datetime
        if now >= job.give_up_at():
            return Ending(Phase.TIMED_OUT, errors.timed_out(job.policy.timeout_days))
        fire_at = min(now + timedelta(seconds=job.wait_seconds), job.give_up_at())
        if job.next_check_at is not None:  # the wait an extension interrupted goes on
            fire_at = min(datetime.fromisoformat(job.next_check_at), job.give_up_at())
            job = latest.job = job.replace(next_check_at=None)
        legal_moment = job.next_legal_moment(now)
        if legal_moment is not None:
            fire_at = min(fire_at, legal_moment)
        _status(context, job, Phase.EXPORTING, nextCheckAt=fire_at.isoformat())
        # A cancel raised earlier (even before the submit) is buffered and wins at once.
        waited = yield from _wait_or_cancel(context, fire_at, latest)
        if waited is RESTART:
            latest.job = latest.job.replace(next_check_at=fire_at.isoformat())
            return RESTART
        if waited is not None:
            return _interrupted(waited)
        job = latest.job

        assert job.operation_url is not None
        checked = yield from _call(
            context,
            steps.CHECK_EXPORT,
            steps.CheckExport(job.request_id, job.operation_url, last_status=job.graph_status),
        )
        cap = job.policy.max_poll_interval_seconds
        job = job.replace(poll_round=job.poll_round + 1)
        match checked.outcome:
            case Outcome.RETRY:
                wait = next_wait(job.wait_seconds, cap=cap, retry_after=checked.retry_after_seconds)
                # Spread: after an outage every DSR gets its 503 at once; they must not all
                # come back at once.
                wait = pacing.spread(wait, job.request_id, job.poll_round, "poll")
                job = latest.job = job.replace(wait_seconds=wait)
            case Outcome.FAILED:
                latest.job = job
                return Ending(Phase.FAILED, checked.error)
            case _:
                job = latest.job = job.replace(
                    graph_status=checked.status,
                    progress=checked.progress,
                    wait_seconds=next_wait(job.wait_seconds, cap=cap),
                )
                if checked.status == "complete":
                    return Ending(Phase.COMPLETED)
                if checked.status == "failed":
                    return Ending(Phase.FAILED, errors.export_failed())
    # Events still undelivered are dropped with this execution, so give a cancel that came
    # during the last round its chance first (a zero-length race delivers anything received).
    waited = yield from _wait_or_cancel(context, context.current_utc_datetime, latest)
    if waited is not None and waited is not RESTART:
        return _interrupted(waited)
    return None


def _interrupted(waited: errors.ErrorDoc | _Restart) -> Ending | _Restart:
    """What a wait that did not simply run out means for the phase: cancelled, or RESTART
    (extensions applied; the next execution waits for the next ask)."""
    if isinstance(waited, _Restart):
        return waited
    return Ending(Phase.CANCELLED, waited)


def _finish(context: df.DurableOrchestrationContext, latest: _Latest, ending: Ending) -> Flow:
    """Manifest (on success), revoke the SAS, tell the ticket: the terminal result.

    A finalisation that fails all its attempts ends the DSR failed with that error: the DSR
    must not claim a manifest or a revoked SAS it could not confirm. A DSR that never had a
    container still records how it ended (``record_finished``): every DSR that ends says so in
    its evidence.
    """
    job = latest.job
    if latest.extend is not None and not latest.extend_spent and latest.extend.is_completed:
        # An ask that came while the last step ran is applied before the DSR ends.
        latest.extend_spent = True
        with contextlib.suppress(Exception):
            yield from _take_asks(context, latest)
        job = latest.job
    finalized: steps.ExportFinalized | None = None
    _status(context, job, Phase.FINALIZING)
    if job.container is None:
        finished = steps.RecordFinished(
            request_id=job.request_id,
            phase=ending.phase.value,
            error_code=(ending.error or {}).get("code"),
            error_category=(ending.error or {}).get("category"),
            operation_id=job.operation_id,
            attempt=job.attempt,
        )
        # Not recording it must not turn the ending into another one; the retention run
        # purges a DSR whose output says it ended even when its evidence is short.
        with contextlib.suppress(Exception):
            yield from _call(context, steps.RECORD_FINISHED, finished)
    else:
        finalize = steps.FinalizeExport(
            request_id=job.request_id,
            container=job.container,
            write_manifest=ending.phase is Phase.COMPLETED,
            sas_expires_at=job.sas_expires_at,
            ending=ending.phase.value,
            error_code=(ending.error or {}).get("code"),
            error_category=(ending.error or {}).get("category"),
            operation_id=job.operation_id,
            attempt=job.attempt,
        )
        try:
            finalized = yield from _call(context, steps.FINALIZE_EXPORT, finalize)
        except Exception as exc:  # noqa: BLE001 - every attempt failed; recorded, not raised
            ending = Ending(Phase.FAILED, errors.finalize_failed(exc, ending.phase.value))
            finalized = steps.ExportFinalized(
                manifest=None, sas={"revoked": False, "expiresAt": job.sas_expires_at}
            )
    completed_at = context.current_utc_datetime
    manifest = finalized.manifest if finalized else None
    sas = finalized.sas if finalized else None
    # The terminal status is complete before the ticket's callback goes out: a ticket that
    # reads the status when it hears "completed" finds the manifest and the SAS state there.
    terminal = {
        key: value
        for key, value in (
            ("manifest", manifest),
            ("sas", sas),
            ("error", ending.error),
            ("completedAt", completed_at.isoformat()),
        )
        if value
    }
    context.set_custom_status(job.status_body(ending.phase, **terminal))
    code = (ending.error or {}).get("code")
    level = logging.INFO if ending.phase is Phase.COMPLETED else logging.WARNING
    _log(context, "dsr_finished", level, job, phase=ending.phase.value, code=code)
    job = yield from _notify(
        context,
        job,
        _TERMINAL_EVENTS[ending.phase],
        ending.phase,
        manifest=manifest,
        completedAt=completed_at.isoformat(),
        errorCode=code,
    )
    if job.failed_callbacks:
        context.set_custom_status(job.status_body(ending.phase, **terminal))
    return job.result(ending, completed_at, manifest=manifest, sas=sas)


def _wait_or_cancel(
    context: df.DurableOrchestrationContext, fire_at: datetime, latest: _Latest
) -> Flow:
    """Wait until ``fire_at`` unless a cancel or an extension ask comes first.

    Returns None when the time came, the cancel's error, or RESTART: an ask arrived, the asks
    in the evidence were applied (recorded, shown, the ticket told) and this execution's one
    extend waiter is spent, so a fresh execution must wait for the next (never a second waiter
    here: see :class:`_Latest`).
    """
    racing = [context.create_timer(fire_at), latest.cancel]
    if not latest.extend_spent:
        racing.append(latest.extend)
    winner = yield context.task_any(racing)
    if winner == latest.cancel:
        data = _event_data(latest.cancel.result)
        return errors.cancelled(data)
    if latest.extend_spent or winner != latest.extend:
        return None
    latest.extend_spent = True
    yield from _take_asks(context, latest)
    # A cancel that came while the asks were applied would be dropped with this execution.
    cancelled = yield from _wait_or_cancel(context, context.current_utc_datetime, latest)
    return cancelled if cancelled is not None else RESTART


def _event_data(data: Any) -> Any:
    if isinstance(data, str):
        # The extension stores event data as the JSON text it was sent (SDK issue #295).
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    return data


def _take_asks(context: df.DurableOrchestrationContext, latest: _Latest) -> Flow:
    """Read the extension asks the API recorded since the last read and apply each new one
    once, in the order they arrived (the evidence's order), whatever repeats or drops the
    events that announced them."""
    while True:
        cursor = latest.job.ask_cursor
        try:
            read = yield from _call(
                context,
                steps.READ_EXTENSION_ASKS,
                steps.ReadExtensionAsks(latest.job.request_id, after_seq=cursor),
            )
        except Exception:  # noqa: BLE001 - every attempt failed: the asks wait, the DSR goes on
            # The asks stay in the evidence after the cursor: a later read (the next
            # execution's first) applies them. An unreadable evidence account must not end
            # the export.
            _log(context, "extensions_unread", logging.WARNING, latest.job)
            return None
        for raw in read.asks:
            yield from _apply_ask(context, latest, raw, read.custom_max_days)
        if len(read.asks) < steps.ASKS_PER_READ or latest.job.ask_cursor <= cursor:
            return None


def _apply_ask(
    context: df.DurableOrchestrationContext,
    latest: _Latest,
    raw: Any,
    custom_max_days: int,
) -> Flow:
    """Apply one ask the API accepted: the domain judges it again against the job (asks sent
    at once are judged in turn), then evidence, status and the ticket."""
    raw = raw if isinstance(raw, dict) else {}
    ask_id, seq = raw.get("askId"), raw.get("seq")
    before = latest.job
    if isinstance(seq, int) and seq > before.ask_cursor:
        before = latest.job = before.replace(ask_cursor=seq)
    if not isinstance(ask_id, str) or ask_id in before.handled_asks():
        return None  # applied or refused already: an ask counts once
    ask = ExtensionAsk.from_dict(raw.get("ask"))
    try:
        job = before.extended_by(
            ask, context.current_utc_datetime, custom_max_days=custom_max_days, ask_id=ask_id
        )
    except (ExtensionRefused, TypeError, ValueError):
        latest.job = before.replace(refused_extensions=(*before.refused_extensions, ask_id))
        _status(context, latest.job, _running_phase(before))
        _log(context, "extension_refused", logging.WARNING, before, ask_id=ask_id)
        return None
    latest.job = job
    applied = job.extensions[-1]
    actor = raw.get("actor") if isinstance(raw.get("actor"), dict) else {}
    record = steps.RecordExtension(
        request_id=job.request_id,
        number=len(job.extensions),
        previous_deadline=applied["previousDeadline"],
        deadline=applied["deadline"],
        original_deadline=job.original_deadline or applied["previousDeadline"],
        extension_days=applied["days"],
        reason_code=applied["reasonCode"],
        reason_sha256=ask.reason_sha256,
        actor_kind=actor.get("kind"),
        actor_id=actor.get("id"),
        ask_id=ask_id,
    )
    yield from _call(context, steps.RECORD_EXTENSION, record)
    phase = _running_phase(job)
    _status(context, job, phase)
    _log(
        context,
        "deadline_extended",
        logging.INFO,
        job,
        ask_id=ask_id,
        previous_deadline=applied["previousDeadline"],
        extension_days=applied["days"],
    )
    latest.job = yield from _notify(
        context,
        job,
        events.DEADLINE_EXTENDED,
        phase,
        previousDeadline=applied["previousDeadline"],
        originalDeadline=job.original_deadline,
        extensionDays=applied["days"],
    )
    return None


def _legal_clock(context: df.DurableOrchestrationContext, job: ExportJob) -> Flow:
    """Raise the deadline warning, and later the overdue notice, once each."""
    now, due = context.current_utc_datetime, job.legal_deadline_at()
    if due is None:
        return job
    warn_at = job.warning_due_at()
    if not job.overdue_noted and now >= due:
        # Overdue implies the warning: a DSR received long ago is told once, not twice.
        job = job.replace(overdue_noted=True, warned=True)
        _log(context, "deadline_overdue", logging.ERROR, job)
        return (yield from _notify(context, job, events.DEADLINE_OVERDUE, Phase.EXPORTING))
    if not job.warned and warn_at is not None and now >= warn_at:
        job = job.replace(warned=True)
        _log(context, "deadline_warning", logging.WARNING, job)
        return (yield from _notify(context, job, events.DEADLINE_WARNING, Phase.EXPORTING))
    return job


def _notify(
    context: df.DurableOrchestrationContext,
    job: ExportJob,
    event_type: str,
    phase: Phase,
    **data: Any,
) -> Flow:
    """Send one callback with back-off; a final failure is recorded, never raised."""
    if job.callback_url is None:
        return job
    now = context.current_utc_datetime
    payload = steps.SendCallback(
        request_id=job.request_id,
        url=job.callback_url,
        # Stable across attempts: receivers deduplicate on it. Deterministic under replay.
        message_id=f"msg_{context.new_uuid()}",
        event=events.build_event(event_type, now, {**job.event_data(phase, now), **data}),
    )
    outcome = yield from deliver(context, payload)
    if outcome.delivered:
        return job
    _log(context, "callback_failed", logging.WARNING, job, event_type=event_type)
    return job.replace(failed_callbacks=(*job.failed_callbacks, event_type))


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
    context.set_custom_status(job.status_body(phase, **extra))


def _after(context: df.DurableOrchestrationContext, seconds: int) -> datetime:
    moment: datetime = context.current_utc_datetime + timedelta(seconds=seconds)
    return moment
