"""The DSR export orchestration: prepare, submit, wait for Graph, finish.

Deterministic by construction: no I/O, no clock but ``context.current_utc_datetime``, no
environment; it imports the pure domain layer only (``make lint`` checks). Every step that
touches the world is an activity, called through the step contract
(:mod:`dsr_export.domain.steps`); every wait is a durable timer. Its input and output, its
custom status and every activity result it sees are non-secret. Every wait and back-off is
:mod:`dsr_export.domain.pacing`'s.

The job flows through the phases by value: each phase takes the job and returns the job it
leaves. A phase that cannot go on raises :class:`_PhaseEnd`, the one way out, carrying the job
as it stands and either an :class:`Ending` or none (continue as new: a history's worth of
rounds, or extension asks applied). :func:`_phases` is the one place that catches it, and an
activity that failed all its attempts arrives there as a ``failed`` ending too (:func:`_call`).
:func:`_finish` then runs once, outside, for every ending there is: whatever happens after the
submit, the SAS is revoked (or its expiry recorded) and the ticket hears. Outcomes:
``completed``, ``failed`` (with Graph's error), ``timed_out`` or ``cancelled``.

When the request named a ``callbackUrl``, the ticket hears of it (accepted, exporting, the
outcome, the legal deadline's warning and overdue) through ``send_callback``; a callback that
keeps failing is recorded in the status and the result and never fails the DSR.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import azure.durable_functions as df

from dsr_export.domain import errors, events, gate, pacing, steps
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused
from dsr_export.domain.job import CANCEL_EVENT, EXTEND_EVENT, Ending, ExportJob
from dsr_export.domain.logs import log_event
from dsr_export.domain.status import Phase
from dsr_export.domain.steps import Outcome
from orchestrations import submit_gate
from orchestrations.callback_delivery import deliver

bp = df.Blueprint()

#: Activities raise only on unexpected, presumably transient trouble (storage hiccup, worker
#: recycled); Graph's answers come back as results the orchestrator decides on.
ACTIVITY_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=pacing.ACTIVITY_FIRST_RETRY_SECONDS * 1000,
    max_number_of_attempts=pacing.ACTIVITY_ATTEMPTS,
)

_TERMINAL_EVENTS = {
    Phase.COMPLETED: events.COMPLETED,
    Phase.CANCELLED: events.CANCELLED,
    Phase.FAILED: events.FAILED,
    Phase.TIMED_OUT: events.FAILED,
}

Flow = Generator[Any, Any, Any]
R = TypeVar("R", bound=steps.Wire)


class _PhaseEnd(Exception):
    """A phase's one way out: the DSR ends with ``ending``, or, with none, this execution
    continues as new with ``job`` (bounded history; or extension asks applied, so a fresh
    execution waits for the next ask)."""

    def __init__(self, job: ExportJob, ending: Ending | None = None) -> None:
        super().__init__(ending.phase.value if ending else "continue-as-new")
        self.job = job
        self.ending = ending


@dataclass
class _Run:
    """One execution's context and the external events it waits for, raced against every
    timer.

    One waiter per event name per execution, never made again: the SDK keeps an event that
    arrives while no waiter of its name is open in one slot per name, and that slot completes
    *every* later waiter of the name (Azure/azure-functions-durable-python#507), so a second
    waiter would take a stale event for a new one. The cancel waiter lives as long as its
    execution. The extend waiter is a nudge: once it fired, the DSR reads the asks from its
    evidence, applies the new ones and continues as new, where a fresh execution has a fresh
    waiter (``extend_spent``).
    """

    context: df.DurableOrchestrationContext
    cancel: Any
    extend: Any
    extend_spent: bool = False
    #: The DSR's ending is decided (:func:`_finish`): a wait no longer races the cancel.
    finishing: bool = False


@bp.orchestration_trigger(context_name="context")
def export_personal_data(context: df.DurableOrchestrationContext) -> Flow:
    """One DSR, from an accepted request to a terminal result."""
    job = ExportJob.from_input(context.get_input())
    continued = job.started_at is not None
    if not continued:
        job = yield from _accept(context, job)
    run = _Run(
        context,
        cancel=context.wait_for_external_event(CANCEL_EVENT),
        extend=context.wait_for_external_event(EXTEND_EVENT),
    )
    end = yield from _phases(run, job, continued=continued)
    if end.ending is not None and end.job.user_id is not None:
        # Whatever ended it (cancel, time-out, failure, its export's end), the DSR leaves its
        # tenant's gate: no place in the queue, no slot out, no export in flight left behind.
        _withdraw_from_gate(context, end.job)
    if end.ending is not None:
        return (yield from _finish(run, end.job, end.ending))
    # Bounded history: a fresh execution carries the state on.
    _status(context, end.job, _running_phase(end.job))
    context.continue_as_new(end.job.to_input())
    return None


def _accept(context: df.DurableOrchestrationContext, job: ExportJob) -> Flow:
    """The first execution: the DSR started, shown accepted, the ticket told."""
    job = job.replace(started_at=context.current_utc_datetime.isoformat())
    _status(context, job, Phase.ACCEPTED)
    # A retried DSR tells the ticket it runs again, not that it was accepted anew.
    first = events.ACCEPTED if job.attempt == 1 else events.RETRIED
    return (yield from _notify(context, job, first, Phase.ACCEPTED, attempt=job.attempt))


def _phases(run: _Run, job: ExportJob, *, continued: bool) -> Flow:
    """Submit (unless Graph has the export already), then poll; returns the
    :class:`_PhaseEnd` that stopped them, the one place one is caught."""
    try:
        if continued and job.legal_deadline is not None:
            # The status carries on from the last execution while the asks are read (a fresh
            # execution starts with none, which would read as "accepted").
            _status(run.context, job, _running_phase(job))
            # An ask whose event was dropped with the last execution is in the evidence.
            job = yield from _take_asks(run, job)
        if job.operation_id is None:
            job = yield from _submit(run, job)
        yield from _poll(run, job)
    except _PhaseEnd as end:
        return end
    except Exception as exc:  # noqa: BLE001 - unforeseen; an activity's failure is a _PhaseEnd
        return _PhaseEnd(job, Ending(Phase.FAILED, errors.activity_failed(exc)))
    raise AssertionError("_poll ends by _PhaseEnd")  # pragma: no cover


def _running_phase(job: ExportJob) -> Phase:
    """The phase a running DSR shows between steps: what it waits for."""
    if job.operation_id:
        return Phase.EXPORTING
    return Phase.SUBMITTING if job.user_id else Phase.RESOLVING_USER


def _call(
    run: _Run,
    job: ExportJob,
    step: steps.Step[Any, R],
    payload: steps.Wire,
    *,
    ride_out: bool = False,
) -> Flow:
    """Call ``step`` with the standard retry options; returns its typed result. An activity
    that failed all its attempts ends the DSR failed, with ``job`` as it stands.

    With ``ride_out``, a step whose storage stayed down through those attempts (about nine
    minutes) is called again after durable waits, the export storage outage's at submit
    (:func:`dsr_export.domain.pacing.storage_wait`, 8.6 to 12.9 hours in all), before the DSR
    ends ``StorageUnavailable``: for the steps whose failure would end a DSR Graph is already
    exporting, or lose the record of how it ended.
    """
    outages = 0
    while True:
        try:
            raw = yield run.context.call_activity_with_retry(
                step.name, ACTIVITY_RETRY, payload.to_dict()
            )
            result: R = step.result_type.from_dict(raw)
        except Exception as exc:
            if not (ride_out and errors.is_storage_outage(exc)):
                raise _PhaseEnd(job, Ending(Phase.FAILED, errors.activity_failed(exc))) from exc
            if outages >= pacing.STORAGE_RESUBMITS:
                exporting = job.operation_id is not None
                error = errors.storage_outlasted(step.name, outages, exc, exporting=exporting)
                raise _PhaseEnd(job, Ending(Phase.FAILED, error)) from exc
            outages += 1
            yield from _wait_out_storage(run, job, step.name, outages)
            continue
        return result


def _wait_out_storage(run: _Run, job: ExportJob, step: str, outage: int) -> Flow:
    """Wait before calling ``step`` again after its storage did not answer; a cancel that comes
    meanwhile ends the DSR (unless its ending is decided already)."""
    wait = pacing.storage_wait(job.request_id, outage)
    _log(
        run.context,
        "step_waits_for_storage",
        logging.WARNING,
        job,
        step=step,
        outage_wait=outage,
        wait_seconds=wait,
    )
    fire_at = _after(run.context, wait)
    phase = Phase.FINALIZING if run.finishing else _running_phase(job)
    _status(run.context, job, phase, nextCheckAt=fire_at.isoformat())
    racing = [run.context.create_timer(fire_at)]
    if not run.finishing:
        racing.append(run.cancel)
    winner = yield run.context.task_any(racing)
    if winner == run.cancel:
        data = _event_data(run.cancel.result)
        raise _PhaseEnd(job, Ending(Phase.CANCELLED, errors.cancelled(data)))


def _fail(job: ExportJob, error: errors.ErrorDoc | None) -> _PhaseEnd:
    return _PhaseEnd(job, Ending(Phase.FAILED, error))


def _submit(run: _Run, job: ExportJob) -> Flow:
    """Resolve the user, then submit (in a fresh container each time Graph never got the
    command) until Graph has the export; returns the job that knows its operation."""
    if job.user_id is None:
        job = yield from _resolve_user(run, job)
    while job.operation_id is None:
        job = yield from _submit_into_container(run, job)
    return job


def _resolve_user(run: _Run, job: ExportJob) -> Flow:
    """The subject's Entra object id, which the export is submitted for."""
    _status(run.context, job, Phase.RESOLVING_USER)
    lookup = steps.ResolveUser(job.request_id, job.user)
    job, found = yield from _graph_step(run, job, steps.RESOLVE_USER, lookup)
    if found.outcome is not Outcome.OK:
        raise _fail(job, found.error)
    return job.replace(user_id=found.user_id)


def _submit_into_container(run: _Run, job: ExportJob) -> Flow:
    """Prepare this attempt's container and submit into it; returns the job with the
    operation, or, for another attempt, without a container."""
    _status(run.context, job, Phase.PREPARING_STORAGE)
    prepare = steps.PrepareContainer(job.request_id, attempt=job.submit_attempt)
    prepared = yield from _call(run, job, steps.PREPARE_CONTAINER, prepare)
    if prepared.outcome is Outcome.FAILED:
        raise _fail(job, prepared.error)
    job = job.replace(container=prepared.container)
    if prepared.request_info_exists:
        # Graph's receipt is in the container but we hold no operation id: find the export.
        return (yield from _recover_lost_submit(run, job))
    job, submitted = yield from _settle_and_submit(run, job, prepared.settle_seconds)
    match submitted.outcome:
        case Outcome.ACCEPTED:
            return (yield from _exporting(run, job, submitted, recovered=False))
        case Outcome.RESUBMIT:
            return (yield from _wait_for_storage(run, job, submitted.error))
        case Outcome.UNKNOWN:
            return (yield from _recover_lost_submit(run, job))
        case _:
            raise _fail(job, submitted.error)


def _settle_and_submit(run: _Run, job: ExportJob, settle_seconds: int) -> Flow:
    """Let the policy settle, then submit when the tenant's gate lets this DSR through;
    returns ``(job, answer)``.

    Every submit call goes through the gate (:mod:`orchestrations.submit_gate`): Graph allows
    1,000 a day per tenant and a refused one may count, so a retry needs a slot too. A quota
    refusal (429 without Retry-After) is the gate's to wait out (it learns the quota is spent);
    other retryable refusals back off as any Graph step does. The gate hears how each submit
    ended. The last chance to cancel, too.

    A submit whose storage did not answer (:func:`_unsettled_submit`) may or may not have
    reached Graph: it is never called again on the slot it had. The DSR looks for Graph's
    receipt first (found: the lost submit's recovery lookups), and asks for a new slot only
    when there is none, so every call to Graph has a slot of its own.
    """
    if settle_seconds:
        job = yield from _wait(run, job, _after(run.context, settle_seconds))
    assert job.user_id is not None and job.container is not None  # noqa: PT018
    submit = steps.SubmitExport(job.request_id, job.user_id, job.container)
    rounds = outages = 0
    while True:
        job = yield from _admitted(run, job)
        _status(run.context, job, Phase.SUBMITTING)
        answer = yield from _unsettled_submit(run, job, submit, outages)
        if answer is None:
            outages += 1
            if (yield from _receipt_after_outage(run, job, outages)):
                return job, steps.ExportSubmitted(outcome=Outcome.UNKNOWN)
            continue
        quota = answer.outcome is Outcome.RETRY and errors.is_quota_refusal(answer.error)
        _report_to_gate(run.context, job, _verdict(answer.outcome, quota=quota))
        if answer.outcome is not Outcome.RETRY:
            return job.replace(throttle_round=0), answer
        if run.context.current_utc_datetime >= job.give_up_at():
            error = errors.gave_up_waiting(job.policy.timeout_days, answer.error)
            raise _PhaseEnd(job, Ending(Phase.TIMED_OUT, error))
        rounds += 1
        if rounds >= job.policy.rounds_per_history:
            raise _PhaseEnd(job)
        if not quota:  # the gate waits out a spent quota; anything else backs off here
            job = job.replace(throttle_round=job.throttle_round + 1)
            wait = pacing.retry_wait(job.request_id, job.throttle_round, answer.retry_after_seconds)
            job = yield from _wait(run, job, min(_after(run.context, wait), job.give_up_at()))


def _unsettled_submit(run: _Run, job: ExportJob, submit: steps.SubmitExport, outages: int) -> Flow:
    """One submit on the slot the gate gave; None when its storage did not answer through the
    activity's attempts (the outcome unknown: Graph may have the export, or never heard of
    it). Ends the DSR failed once the storage has stayed down through every wait."""
    try:
        raw = yield run.context.call_activity_with_retry(
            steps.SUBMIT_EXPORT.name, ACTIVITY_RETRY, submit.to_dict()
        )
    except Exception as exc:
        if not errors.is_storage_outage(exc):
            raise _PhaseEnd(job, Ending(Phase.FAILED, errors.activity_failed(exc))) from exc
        if outages >= pacing.STORAGE_RESUBMITS:
            error = errors.storage_outlasted(
                steps.SUBMIT_EXPORT.name, outages, exc, exporting=False
            )
            raise _PhaseEnd(job, Ending(Phase.FAILED, error)) from exc
        return None
    return steps.ExportSubmitted.from_dict(raw)


def _receipt_after_outage(run: _Run, job: ExportJob, outage: int) -> Flow:
    """After a submit whose storage did not answer: its slot is spent (reported as a retry, so
    the gate keeps counting it and the DSR keeps its place), the outage waited out; returns
    whether Graph's receipt is in the container (the submit reached Graph: recover it, never
    submit again). The container is prepared again, which is idempotent and says so."""
    _report_to_gate(run.context, job, gate.SubmitVerdict.RETRY)
    yield from _wait_out_storage(run, job, steps.SUBMIT_EXPORT.name, outage)
    check = steps.PrepareContainer(job.request_id, attempt=job.submit_attempt)
    prepared = yield from _call(run, job, steps.PREPARE_CONTAINER, check, ride_out=True)
    if prepared.outcome is Outcome.FAILED:
        raise _fail(job, prepared.error)
    if prepared.request_info_exists:
        _withdraw_from_gate(run.context, job)  # Graph has it: no slot wanted, no place held
    return prepared.request_info_exists


def _gate(job: ExportJob) -> df.EntityId:
    return submit_gate.gate_id(job.tenant_id or submit_gate.HOME_TENANT)


def _admitted(run: _Run, job: ExportJob) -> Flow:
    """Ask the tenant's gate for a slot until it lets this DSR through, waiting on a durable
    timer for the time it names; returns the job. An idle gate answers at once.

    A DSR that ends while it waits (cancelled, timed out) leaves the queue (as every ending
    does, :func:`export_personal_data`); one that continues as new keeps its place and asks
    again from the next execution.
    """
    context = run.context
    for _ in range(job.policy.rounds_per_history):
        now = context.current_utc_datetime
        if now >= job.give_up_at():
            error = errors.gave_up_waiting(job.policy.timeout_days, None)
            raise _PhaseEnd(job, Ending(Phase.TIMED_OUT, error))
        asked = gate.Ask(
            request_id=job.request_id,
            deadline=job.legal_deadline,
            received=job.received_at or job.started_at,
            now=now.isoformat(),
            subject=job.user_id,
            submits_per_day=job.budget("submitsPerDay"),
        )
        raw = yield context.call_entity(_gate(job), submit_gate.ASK, asked.to_dict())
        answer = gate.GateAnswer.from_dict(raw)
        if answer.granted or answer.ask_at is None:
            return job
        fire_at = min(datetime.fromisoformat(answer.ask_at), job.give_up_at())
        _log(
            context,
            "submit_queued",
            logging.INFO,
            job,
            slot_at=fire_at.isoformat(),
            position=answer.position,
            queued=answer.queued,
        )
        _status(
            context,
            job,
            Phase.SUBMITTING,
            nextCheckAt=fire_at.isoformat(),
        )
        job = yield from _wait(run, job, fire_at)  # an ending leaves the gate (the orchestrator)
    raise _PhaseEnd(job)


def _verdict(outcome: Outcome, *, quota: bool) -> str:
    if outcome is Outcome.ACCEPTED:
        return gate.SubmitVerdict.ACCEPTED
    if quota:
        return gate.SubmitVerdict.QUOTA
    if outcome is Outcome.RETRY:
        return gate.SubmitVerdict.RETRY
    return gate.SubmitVerdict.ENDED


def _report_to_gate(context: df.DurableOrchestrationContext, job: ExportJob, verdict: str) -> None:
    done = gate.SubmitReport(
        request_id=job.request_id,
        verdict=verdict,
        now=context.current_utc_datetime.isoformat(),
        deadline=job.legal_deadline,
        received=job.received_at or job.started_at,
    )
    context.signal_entity(_gate(job), submit_gate.REPORT, done.to_dict())


def _withdraw_from_gate(context: df.DurableOrchestrationContext, job: ExportJob) -> None:
    leaving = {"requestId": job.request_id, "countedUntil": job.pace_until}
    context.signal_entity(_gate(job), submit_gate.WITHDRAW, leaving)


def _wait_for_storage(run: _Run, job: ExportJob, error: errors.ErrorDoc | None) -> Flow:
    """The export storage was down when Graph checked the SAS (and the app could not reach it
    either): wait, doubling, then submit again into a fresh container (Graph may have left a
    partial receipt in this one); returns the job for it. Fails after the last allowed wait."""
    resubmit = job.storage_resubmits + 1
    if resubmit > pacing.STORAGE_RESUBMITS:
        raise _fail(job, errors.storage_unavailable(job.storage_resubmits, error))
    wait = pacing.storage_wait(job.request_id, resubmit)
    _log(
        run.context,
        "submit_waits_for_storage",
        logging.WARNING,
        job,
        resubmit=resubmit,
        wait_seconds=wait,
    )
    fire_at = _after(run.context, wait)
    _status(run.context, job, Phase.SUBMITTING, nextCheckAt=fire_at.isoformat())
    # An extension cuts the wait short: the next execution submits into the fresh container.
    fresh = partial(_fresh_container_after_outage, resubmit=resubmit)
    job = yield from _wait(run, job, fire_at, restart_as=fresh)
    return fresh(job)


def _fresh_container_after_outage(job: ExportJob, *, resubmit: int) -> ExportJob:
    return job.replace(
        submit_attempt=job.submit_attempt + 1, container=None, storage_resubmits=resubmit
    )


def _recover_lost_submit(run: _Run, job: ExportJob) -> Flow:
    """Find the export a submit whose answer was lost started; returns the job with the
    operation, or, when Graph says it never got the command, the job for a fresh container."""
    _status(run.context, job, Phase.SUBMITTING)
    job, recovered = yield from _look_up_submit(run, job)
    if recovered.outcome is Outcome.OK:
        return (yield from _exporting(run, job, recovered, recovered=True))
    if recovered.outcome is Outcome.FAILED:
        raise _fail(job, recovered.error)
    # Graph's word: no such operation, the command was never posted. Once more, elsewhere.
    if job.submit_attempt - job.submit_base - job.storage_resubmits >= pacing.SUBMIT_ATTEMPTS:
        raise _fail(job, errors.never_posted(pacing.SUBMIT_ATTEMPTS))
    _log(run.context, "submit_restarted", logging.WARNING, job)
    return job.replace(submit_attempt=job.submit_attempt + 1, container=None)


def _look_up_submit(run: _Run, job: ExportJob) -> Flow:
    """Look the lost submit up by its receipt, a few times over some minutes; returns
    ``(job, answer)``.

    Graph may not show a command it has just accepted; only an answer of ``absent`` that
    persists over every lookup counts as Graph's word that the export does not exist.
    """
    user_id, container = job.user_id, job.container
    assert user_id is not None and container is not None  # noqa: PT018
    found: Any = None
    for index in range(len(pacing.RECOVERY_WAITS) + 1):
        if index:
            wait = pacing.recovery_wait(job.request_id, index)
            job = yield from _wait(run, job, _after(run.context, wait))
        lookup = steps.RecoverSubmit(
            job.request_id,
            user_id,
            container,
            final=index == len(pacing.RECOVERY_WAITS),
        )
        job, found = yield from _graph_step(run, job, steps.RECOVER_SUBMIT, lookup)
        if found.outcome is not Outcome.ABSENT:
            break
    return job, found


def _exporting(
    run: _Run,
    job: ExportJob,
    answer: steps.ExportSubmitted | steps.ExportRecovered,
    *,
    recovered: bool,
) -> Flow:
    """The export is Graph's now: remember the operation, tell the ticket, poll on."""
    job = job.replace(
        operation_id=answer.operation_id,
        operation_url=answer.operation_url,
        submitted_at=answer.submitted_at,
        sas_expires_at=answer.sas_expires_at,
        wait_seconds=answer.retry_after_seconds or pacing.FIRST_POLL_SECONDS,
    )
    if recovered:
        _log(run.context, "submit_recovered", logging.INFO, job, operation_id=job.operation_id)
    _status(run.context, job, Phase.EXPORTING)
    return (yield from _notify(run.context, job, events.EXPORTING, Phase.EXPORTING))


def _graph_step(run: _Run, job: ExportJob, step: steps.Step[Any, R], payload: steps.Wire) -> Flow:
    """Call a Graph step; wait out its ``retry`` answers on durable timers until the DSR's own
    time-out, with jittered back-off (Retry-After the minimum). Returns ``(job, answer)``
    (``ok``/``accepted``, ``failed``, ...); times out while Graph keeps refusing, or continues
    as new after a history's worth of retries.

    A storage outage is waited out too (``ride_out``): the submit records Graph's answer in the
    evidence, and its recovery reads Graph's receipt, after Graph may have the export."""
    answer = yield from _call(run, job, step, payload, ride_out=True)
    rounds = 0
    while answer.outcome is Outcome.RETRY:
        if run.context.current_utc_datetime >= job.give_up_at():
            error = errors.gave_up_waiting(job.policy.timeout_days, answer.error)
            raise _PhaseEnd(job, Ending(Phase.TIMED_OUT, error))
        if rounds >= job.policy.rounds_per_history:
            raise _PhaseEnd(job)
        job = job.replace(throttle_round=job.throttle_round + 1)
        wait = pacing.retry_wait(job.request_id, job.throttle_round, answer.retry_after_seconds)
        job = yield from _wait(run, job, min(_after(run.context, wait), job.give_up_at()))
        answer = yield from _call(run, job, step, payload, ride_out=True)
        rounds += 1
    return job.replace(throttle_round=0), answer


def _poll(run: _Run, job: ExportJob) -> Flow:
    """Wait with durable timers and check the operation until it ends or time runs out;
    continues as new after ``rounds_per_history`` rounds. The tenant's gate hears from the
    DSR every :data:`pacing.POLL_PACE_EVERY` rounds and answers how many exports are in
    flight: the waits widen so that all of them poll within the tenant's hourly budget."""
    in_flight = 1
    for index in range(job.policy.rounds_per_history):
        if index % pacing.POLL_PACE_EVERY == 0:
            job, in_flight = yield from _in_flight(run, job)
            if job.poll_round == 0:  # the first poll, within the budget too
                first = pacing.first_poll_wait(
                    job.request_id, job.wait_seconds, in_flight, job.budget("pollsPerHour")
                )
                job = job.replace(wait_seconds=first)
        job = yield from _poll_once(run, job, in_flight)
    # Events still undelivered are dropped with this execution, so give a cancel that came
    # during the last round its chance first (a zero-length race delivers anything received).
    job = yield from _wait(run, job, run.context.current_utc_datetime)
    raise _PhaseEnd(job)


def _in_flight(run: _Run, job: ExportJob) -> Flow:
    """The tenant's exports in flight, this one counted (the gate's ``pace``); returns
    ``(job, count)``, the job remembering where the gate counts it."""
    context = run.context
    asked = gate.PaceAsk(
        request_id=job.request_id,
        now=context.current_utc_datetime.isoformat(),
        cap=job.policy.max_poll_interval_seconds,
        counted_until=job.pace_until,
        polls_per_hour=job.budget("pollsPerHour"),
    )
    raw = yield context.call_entity(_gate(job), submit_gate.PACE, asked.to_dict())
    paced = gate.Paced.from_dict(raw)
    return job.replace(pace_until=paced.counted_until or None), max(paced.in_flight, 1)


def _poll_once(run: _Run, job: ExportJob, in_flight: int = 1) -> Flow:
    """One round: the legal clock, a wait, a check of the operation; returns the job."""
    job = yield from _legal_clock(run.context, job)
    now = run.context.current_utc_datetime
    if now >= job.give_up_at():
        raise _PhaseEnd(job, Ending(Phase.TIMED_OUT, errors.timed_out(job.policy.timeout_days)))
    fire_at = _next_check_at(job, now)
    job = job.replace(next_check_at=None)
    _status(run.context, job, Phase.EXPORTING, nextCheckAt=fire_at.isoformat())
    # A cancel raised earlier (even before the submit) is buffered and wins at once.
    # An extension cuts the wait short: the next execution waits on until ``fire_at``.
    resume = fire_at.isoformat()
    job = yield from _wait(run, job, fire_at, restart_as=lambda j: j.replace(next_check_at=resume))
    assert job.operation_url is not None
    check = steps.CheckExport(job.request_id, job.operation_url, last_status=job.graph_status)
    # A storage outage must not end an export Graph runs: the check (and its record) waits.
    checked = yield from _call(run, job, steps.CHECK_EXPORT, check, ride_out=True)
    return _checked(job, checked, in_flight)


def _next_check_at(job: ExportJob, now: datetime) -> datetime:
    """When to check the operation next: after the current wait (or the rest of the wait an
    extension interrupted), never after the time-out or the next legal-clock moment."""
    fire_at = min(now + timedelta(seconds=job.wait_seconds), job.give_up_at())
    if job.next_check_at is not None:  # the wait an extension interrupted goes on
        fire_at = min(datetime.fromisoformat(job.next_check_at), job.give_up_at())
    legal_moment = job.next_legal_moment(now)
    if legal_moment is not None:
        fire_at = min(fire_at, legal_moment)
    return fire_at


def _checked(job: ExportJob, checked: steps.ExportChecked, in_flight: int = 1) -> ExportJob:
    """The job after one check of the operation; ends the DSR when the operation ended."""
    cap = job.policy.max_poll_interval_seconds
    job = job.replace(poll_round=job.poll_round + 1)
    match checked.outcome:
        case Outcome.RETRY:
            wait = pacing.poll_retry_wait(
                job.request_id,
                job.poll_round,
                job.wait_seconds,
                cap,
                checked.retry_after_seconds,
                in_flight,
                job.budget("pollsPerHour"),
            )
            return job.replace(wait_seconds=wait)
        case Outcome.FAILED:
            raise _fail(job, checked.error)
        case _:
            job = job.replace(
                graph_status=checked.status,
                progress=checked.progress,
                wait_seconds=pacing.paced_poll_wait(
                    job.request_id,
                    job.poll_round,
                    job.wait_seconds,
                    cap=cap,
                    in_flight=in_flight,
                    per_hour=job.budget("pollsPerHour"),
                ),
            )
    if checked.status == "complete":
        raise _PhaseEnd(job, Ending(Phase.COMPLETED))
    if checked.status == "failed":
        raise _fail(job, errors.export_failed())
    return job


def _finish(run: _Run, job: ExportJob, ending: Ending) -> Flow:
    """Manifest (on success), revoke the SAS, tell the ticket: the terminal result.

    A finalisation that fails all its attempts ends the DSR failed with that error: the DSR
    must not claim a manifest or a revoked SAS it could not confirm. A DSR that never had a
    container still records how it ended (``record_finished``): every DSR that ends says so in
    its evidence.
    """
    context = run.context
    run.finishing = True
    job = yield from _late_asks(run, job)
    _status(context, job, Phase.FINALIZING)
    if job.container is None:
        yield from _record_finished(run, job, ending)
        finalized = None
    else:
        ending, finalized = yield from _finalize(run, job, ending)
    completed_at = context.current_utc_datetime
    manifest = finalized.manifest if finalized else None
    sas = finalized.sas if finalized else None
    # The terminal status is complete before the ticket's callback goes out: a ticket that
    # reads the status when it hears "completed" finds the manifest and the SAS state there.
    terminal = _terminal_fields(manifest=manifest, sas=sas, ending=ending, at=completed_at)
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


def _late_asks(run: _Run, job: ExportJob) -> Flow:
    """An ask that came while the last step ran is applied before the DSR ends."""
    if run.extend_spent or not run.extend.is_completed:
        return job
    run.extend_spent = True
    try:
        return (yield from _take_asks(run, job))
    except _PhaseEnd as end:  # a record that failed: the ending stays the one it was
        return end.job


def _record_finished(run: _Run, job: ExportJob, ending: Ending) -> Flow:
    """Record how a DSR that never had a container ended. Not recording it must not turn the
    ending into another one; the retention run purges a DSR whose output says it ended even
    when its evidence is short."""
    finished = steps.RecordFinished(
        request_id=job.request_id,
        phase=ending.phase.value,
        error_code=(ending.error or {}).get("code"),
        error_category=(ending.error or {}).get("category"),
        operation_id=job.operation_id,
        attempt=job.attempt,
    )
    with contextlib.suppress(_PhaseEnd):
        yield from _call(run, job, steps.RECORD_FINISHED, finished, ride_out=_rides_out(ending))


def _finalize(run: _Run, job: ExportJob, ending: Ending) -> Flow:
    """Write the manifest (on success) and revoke the SAS; returns ``(ending, finalized)``, the
    ending turned ``failed`` when every attempt failed."""
    assert job.container is not None
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
        finalized = yield from _call(
            run, job, steps.FINALIZE_EXPORT, finalize, ride_out=_rides_out(ending)
        )
    except _PhaseEnd as end:  # every attempt failed; recorded, not raised
        cause = end.__cause__ if end.__cause__ is not None else end
        failed = Ending(Phase.FAILED, errors.finalize_failed(cause, ending.phase.value))
        unrevoked = {"revoked": False, "expiresAt": job.sas_expires_at}
        return failed, steps.ExportFinalized(manifest=None, sas=unrevoked)
    return ending, finalized


def _rides_out(ending: Ending) -> bool:
    """Whether the finalisation waits out a storage outage: not when the DSR ends because
    storage stayed down for hours already (the ticket would hear a day late)."""
    return (ending.error or {}).get("code") not in errors.STORAGE_OUTAGE_CODES


def _terminal_fields(*, manifest: Any, sas: Any, ending: Ending, at: datetime) -> dict[str, Any]:
    """The terminal status's own fields, those that have a value."""
    fields = (
        ("manifest", manifest),
        ("sas", sas),
        ("error", ending.error),
        ("completedAt", at.isoformat()),
    )
    return {key: value for key, value in fields if value}


def _wait(
    run: _Run,
    job: ExportJob,
    fire_at: datetime,
    *,
    restart_as: Callable[[ExportJob], ExportJob] | None = None,
) -> Flow:
    """Wait until ``fire_at`` unless a cancel or an extension ask comes first; returns the job
    when the time came.

    A cancel ends the DSR. An ask: the asks in the evidence are applied (recorded, shown, the
    ticket told) and this execution's one extend waiter is spent, so the DSR continues as new
    to wait for the next (never a second waiter here: see :class:`_Run`), with the job
    ``restart_as`` makes of it (what the wait was for, done or kept for the next execution).
    """
    racing = [run.context.create_timer(fire_at), run.cancel]
    if not run.extend_spent:
        racing.append(run.extend)
    winner = yield run.context.task_any(racing)
    if winner == run.cancel:
        data = _event_data(run.cancel.result)
        raise _PhaseEnd(job, Ending(Phase.CANCELLED, errors.cancelled(data)))
    if run.extend_spent or winner != run.extend:
        return job
    run.extend_spent = True
    job = yield from _take_asks(run, job)
    # A cancel that came while the asks were applied would be dropped with this execution.
    job = yield from _wait(run, job, run.context.current_utc_datetime)
    raise _PhaseEnd(restart_as(job) if restart_as is not None else job)


def _event_data(data: Any) -> Any:
    if isinstance(data, str):
        # The extension stores event data as the JSON text it was sent (SDK issue #295).
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    return data


def _take_asks(run: _Run, job: ExportJob) -> Flow:
    """Read the extension asks the API recorded since the last read and apply each new one
    once, in the order they arrived (the evidence's order), whatever repeats or drops the
    events that announced them; returns the job."""
    while True:
        cursor = job.ask_cursor
        try:
            read = yield from _call(
                run,
                job,
                steps.READ_EXTENSION_ASKS,
                steps.ReadExtensionAsks(job.request_id, after_seq=cursor),
            )
        except _PhaseEnd:  # every attempt failed: the asks wait, the DSR goes on
            # The asks stay in the evidence after the cursor: a later read (the next
            # execution's first) applies them. An unreadable evidence account must not end
            # the export.
            _log(run.context, "extensions_unread", logging.WARNING, job)
            return job
        for raw in read.asks:
            job = yield from _apply_ask(run, job, raw, read.custom_max_days)
        if len(read.asks) < steps.ASKS_PER_READ or job.ask_cursor <= cursor:
            return job


def _apply_ask(run: _Run, job: ExportJob, raw: Any, custom_max_days: int) -> Flow:
    """Apply one ask the API accepted: the domain judges it again against the job (asks sent
    at once are judged in turn), then evidence, status and the ticket; returns the job."""
    raw = raw if isinstance(raw, dict) else {}
    ask_id, seq = raw.get("askId"), raw.get("seq")
    if isinstance(seq, int) and seq > job.ask_cursor:
        job = job.replace(ask_cursor=seq)
    if not isinstance(ask_id, str) or ask_id in job.handled_asks():
        return job  # applied or refused already: an ask counts once
    ask = ExtensionAsk.from_dict(raw.get("ask"))
    now = run.context.current_utc_datetime
    try:
        extended = job.extended_by(ask, now, custom_max_days=custom_max_days, ask_id=ask_id)
    except (ExtensionRefused, TypeError, ValueError):
        refused = job.replace(refused_extensions=(*job.refused_extensions, ask_id))
        _status(run.context, refused, _running_phase(job))
        _log(run.context, "extension_refused", logging.WARNING, job, ask_id=ask_id)
        return refused
    actor = raw.get("actor") if isinstance(raw.get("actor"), dict) else {}
    return (yield from _extended(run, extended, ask, ask_id, actor))


def _extended(
    run: _Run, job: ExportJob, ask: ExtensionAsk, ask_id: str, actor: dict[str, Any]
) -> Flow:
    """An extension applied: record it in the evidence, show it, tell the ticket."""
    applied = job.extensions[-1]
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
    yield from _call(run, job, steps.RECORD_EXTENSION, record, ride_out=True)
    phase = _running_phase(job)
    _status(run.context, job, phase)
    previous, days = applied["previousDeadline"], applied["days"]
    _log(
        run.context,
        "deadline_extended",
        logging.INFO,
        job,
        ask_id=ask_id,
        previous_deadline=previous,
        extension_days=days,
    )
    return (
        yield from _notify(
            run.context,
            job,
            events.DEADLINE_EXTENDED,
            phase,
            previousDeadline=previous,
            originalDeadline=job.original_deadline,
            extensionDays=days,
        )
    )


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
            tenant_id=job.tenant_id,
            **fields,
        )


def _status(
    context: df.DurableOrchestrationContext, job: ExportJob, phase: Phase, **extra: Any
) -> None:
    context.set_custom_status(job.status_body(phase, **extra))


def _after(context: df.DurableOrchestrationContext, seconds: int) -> datetime:
    moment: datetime = context.current_utc_datetime + timedelta(seconds=seconds)
    return moment
