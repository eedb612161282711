"""The one way a DSR enters the system, shared by the HTTP and the queue intake.

Both faces call :func:`start_or_get`, so validation and idempotency cannot drift apart: the
canonical ``requestId`` (upper case) is the orchestration instance id, a known id answers with
the DSR already under way (never a second export), the same id for another user or with other
values (callback URL, regulation, receipt, note) is a conflict naming each field, and the race
between two deliveries of the same request is settled by the task hub ("already exists").
"""

from __future__ import annotations

import enum
import functools
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

import azure.durable_functions as df

from dsr_export import composition
from dsr_export.adapters.durable_client import (
    InstanceGone,
    InstanceUnknown,
    TaskHub,
    decode_payload,
)
from dsr_export.adapters.outbound import check_url
from dsr_export.domain import dsr_keys, lifecycle
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.deadlines import deadline, warning_at
from dsr_export.domain.evidence import (
    EVENT_ID,
    BrokenRecord,
    EvidenceRecord,
    evidence_document,
    parse_record,
)
from dsr_export.domain.job import ExportJob
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import (
    ExportRequest,
    FieldError,
    InvalidRequest,
    canonical_request_id,
)
from dsr_export.domain.status import (
    TERMINAL_PHASES,
    Phase,
    RecordedStatus,
    StatusDocument,
    status_document,
)
from dsr_export.domain.steps import CANCEL_EVENT, ORCHESTRATOR
from dsr_export.domain.tenants import Tenant
from dsr_export.settings import (
    SettingsError,
    callback_settings,
    deadline_settings,
    export_policy,
)
from intake.tenancy import TenantOutOfReach, submission_tenant, unknown_tenant
from intake.verdicts import Done, Problem, Refused

#: Runtime states in which an orchestration still runs (and can take an event).
LIVE_STATES: Final = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})
#: The longest request id (``validate_request_id``), which a DSR id stays within.
MAX_REQUEST_ID: Final = 100
#: The event ids of the DSR's first record and of its one possible correction.
RECEIVED_EVENT: Final = "received"
CORRECTED_EVENT: Final = "received-corrected"


class Admission(enum.Enum):
    """What became of one submission."""

    STARTED = "started"
    EXISTING = "existing"
    INVALID = "invalid"
    CONFLICT = "conflict"
    #: The tenant named (or implied) is not served here, or not within the caller's reach.
    UNKNOWN_TENANT = "unknown_tenant"


@dataclass(frozen=True)
class SubmissionOutcome:
    """The answer to one submission; ``document`` is the DSR's status when there is a DSR."""

    verdict: Admission
    request_id: str | None = None
    document: StatusDocument | None = None
    errors: list[FieldError] = field(default_factory=list)
    detail: str = ""


async def start_or_get(
    hub: TaskHub,
    payload: object,
    *,
    now: datetime,
    source: str,
    caller: Caller,
) -> SubmissionOutcome:
    """Validate ``payload`` and start its export, or answer with the one already under way.

    ``caller`` (authenticated by the intake) is recorded as the DSR's submitter; the body's
    ``requestedBy`` stays a free-text note. With ``TENANCY=multi`` the DSR belongs to the
    tenant the request names or the caller's binding implies (:mod:`intake.tenancy`), which is
    resolved before anything starts; its id is then ``{tenant key}:{requestId}``.
    """
    try:
        request = _parse(payload, now)
        tenant = submission_tenant(payload, caller)
        if tenant is not None:
            request = _of_tenant(request, tenant)
    except InvalidRequest as exc:
        return SubmissionOutcome(
            Admission.INVALID, errors=exc.errors, detail="one or more fields are invalid"
        )
    except TenantOutOfReach as exc:
        return SubmissionOutcome(Admission.UNKNOWN_TENANT, detail=exc.tenant_id)
    existing = await _existing_or_started(hub, request, now, source, caller, tenant)
    if isinstance(existing, SubmissionOutcome):
        return existing
    return _duplicate(existing, request, caller, source, now)


def _parse(payload: object, now: datetime) -> ExportRequest:
    callbacks = callback_settings()
    return ExportRequest.parse(
        payload,
        now=now,
        callback_check=functools.partial(
            check_url,
            allowed_hosts=callbacks.allowed_hosts,
            allow_loopback=callbacks.allow_loopback,
        )
        if callbacks.enabled
        else None,
        max_age=timedelta(days=deadline_settings().received_at_max_age_days),
    )


def _of_tenant(request: ExportRequest, tenant: Tenant) -> ExportRequest:
    """The request as its tenant's DSR: the pair as its id, the tenant's regulation unless the
    request names one."""
    regulation = request.regulation if "regulation" in request.sent else tenant.regulation
    dsr_id = dsr_keys.dsr_id(tenant.tenant_id, request.request_id)
    if len(dsr_id) > MAX_REQUEST_ID:  # the DSR id stays a request id: every route takes it
        longest = MAX_REQUEST_ID - len(dsr_id) + len(request.request_id)
        raise InvalidRequest(
            [FieldError("/requestId", f"must be at most {longest} characters with many tenants")]
        )
    return replace(
        request,
        request_id=dsr_id,
        given_id=None,
        regulation=regulation,
    )


async def _existing_or_started(
    hub: TaskHub,
    request: ExportRequest,
    now: datetime,
    source: str,
    caller: Caller,
    tenant: Tenant | None = None,
) -> df.DurableOrchestrationStatus | SubmissionOutcome:
    """The DSR already under way under the request's id, or the outcome of starting it."""
    given = request.given_id or request.request_id
    existing = await find_dsr(hub, given, show_input=True)
    if existing is not None:
        return existing
    earlier = lifecycle.earlier_dsr(evidence_records(request.request_id))
    if earlier is None:
        return await _start(hub, request, now, source, caller, tenant)
    # A concurrent duplicate may have started the DSR (and it written evidence) since the
    # first look: the task hub decides between "under way" and "purged".
    existing = await find_dsr(hub, given, show_input=True)
    if existing is not None:
        return existing
    # The task hub forgot the DSR (purged); its evidence did not. A second DSR under the id
    # would export into the same container and collide with every record.
    return SubmissionOutcome(
        Admission.CONFLICT,
        request.request_id,
        errors=[FieldError("/requestId", "already used for an earlier DSR")],
        detail=lifecycle.earlier_dsr_detail(request.request_id, earlier),
    )


async def _start(
    hub: TaskHub,
    request: ExportRequest,
    now: datetime,
    source: str,
    caller: Caller,
    tenant: Tenant | None = None,
) -> df.DurableOrchestrationStatus | SubmissionOutcome:
    """Start the DSR; the one a concurrent duplicate started when it won the race."""
    try:
        job = _job(request, now, caller, tenant)
    except OverflowError:  # a deadline beyond the calendar: no real request gets here
        error = FieldError("/receivedAt", "gives a deadline outside the supported dates")
        return SubmissionOutcome(
            Admission.INVALID, errors=[error], detail="receivedAt is out of range"
        )
    # The evidence opens before the DSR starts: a DSR never runs without its first record
    # (a retried delivery finds the record written and appends nothing).
    received = _record_received(job, request, caller, source, now)
    first = _first_arrival(received)
    if first is not None:  # a resend of a submission that never started: it arrived then
        job = _job(request, first, caller, tenant)
        mine = replace(received.mine, received_at=job.received_at, deadline=job.legal_deadline)
        received = _Received(received.record, mine)
    if not await hub.start(ORCHESTRATOR, request.request_id, job.to_input()):
        # A concurrent duplicate won the race: answer as to any duplicate.
        existing = await find(hub, request.request_id, show_input=True)
        if existing is None:  # started and gone again between two calls: transient, retry
            raise RuntimeError(f"instance {request.request_id} vanished after already-exists")
        return existing
    _correct_received(job.request_id, received, now)
    log_event(
        "dsr_accepted",
        request_id=request.request_id,
        phase="accepted",
        source=source,
        caller_kind=caller.kind,
        caller_id=caller.id,
        deadline=job.legal_deadline,
        warning_at=job.warning_at,
    )
    doc = status_document(
        request.request_id, "Pending", None, None, now, now, now=now, legal=job.deadline_record()
    )
    return SubmissionOutcome(Admission.STARTED, request.request_id, doc)


def _duplicate(
    existing: df.DurableOrchestrationStatus,
    request: ExportRequest,
    caller: Caller,
    source: str,
    now: datetime,
) -> SubmissionOutcome:
    """The answer to a request whose id names a DSR already accepted."""
    stored = stored_job(existing)
    if not _may_know_subject(caller, stored):
        # Whether the guessed person is this DSR's subject, or which field differs, is not for
        # a caller that may not read DSRs and did not file this one: one answer for all.
        log_event(
            "dsr_id_in_use",
            request_id=existing.instance_id,
            source=source,
            caller_kind=caller.kind,
            caller_id=caller.id,
        )
        return _in_use(
            existing.instance_id,
            "already used for another DSR",
            "this requestId is already in use",
        )
    if not _same_subject(stored, request):
        return _in_use(
            existing.instance_id,
            "already used for a DSR of another user",
            "this requestId belongs to a DSR for another user",
        )
    differing = _differences(stored, request)
    if differing:
        return SubmissionOutcome(
            Admission.CONFLICT,
            existing.instance_id,
            errors=[
                FieldError(f"/{name}", "differs from the DSR already accepted under this id")
                for name in differing
            ],
            detail="this requestId names a DSR accepted with other values",
        )
    log_event("dsr_duplicate", request_id=existing.instance_id, source=source)
    return SubmissionOutcome(
        Admission.EXISTING, existing.instance_id, document(existing, now, stored)
    )


def _in_use(request_id: str, error: str, detail: str) -> SubmissionOutcome:
    return SubmissionOutcome(
        Admission.CONFLICT,
        request_id,
        errors=[FieldError("/requestId", error)],
        detail=detail,
    )


def evidence_records(request_id: str) -> list[EvidenceRecord]:
    """The DSR's evidence records that parse (a broken one is the verifier's to name)."""
    kept = []
    for line in composition.evidence_log().read(canonical_request_id(request_id)):
        try:
            kept.append(parse_record(line))
        except BrokenRecord:
            continue
    return kept


@dataclass(frozen=True)
class _Received:
    """The ``received`` record in the log, and the data this submission would have written."""

    record: EvidenceRecord
    mine: entries.Received


def _record_received(
    job: ExportJob, request: ExportRequest, caller: Caller, source: str, now: datetime
) -> _Received:
    regulation = request.regulation
    received = entries.Received(
        event_id=RECEIVED_EVENT,
        source=source,
        regulation=regulation.name,
        regulation_days=regulation.days,
        received_at=job.received_at,
        deadline=job.legal_deadline,
        submitter_kind=caller.kind,
        submitter_id=caller.id,
        submitter_tenant_id=caller.tenant_id,
        user_object_id=request.user_object_id,
    )
    record = composition.evidence_log().write(job.request_id, received, now)
    return _Received(record, received)


#: What a resend of the same submission changes in its ``received`` record: its times only.
_ARRIVAL_FIELDS: Final = frozenset({"receivedAt", "deadline"})


def _first_arrival(received: _Received) -> datetime | None:
    """When the recorded ``received`` is this same submission sent before (its start lost to a
    restart or an outage, the ticket sending again), the time it first arrived; None otherwise.

    The legal clock runs from the first arrival, which the evidence holds; and the DSR starts
    as recorded, so nothing needs correcting (a correction is for a race between two different
    submissions).
    """
    written = {k: v for k, v in received.record.data.items() if k != EVENT_ID}
    wanted = {k: v for k, v in received.mine.data().items() if k != EVENT_ID and v is not None}
    differing = {k for k in written.keys() | wanted.keys() if written.get(k) != wanted.get(k)}
    recorded = written.get("receivedAt")
    if not differing or not differing <= _ARRIVAL_FIELDS or not isinstance(recorded, str):
        return None
    try:
        return datetime.fromisoformat(recorded)
    except ValueError:
        return None


def _correct_received(request_id: str, received: _Received, now: datetime) -> None:
    """Make the evidence describe the submission that started the DSR.

    The ``received`` record is written before ``start_new`` decides, first writer wins: when
    two first submissions of one id race (two people, two callers, two receipt times), the
    record may be the loser's while the winner's DSR runs. The winner, and only it, sees that
    here and appends the correction (``supersedesSeq`` naming the record it replaces); readers
    take the last ``received`` record. A correction that cannot be written is logged, never a
    failed submit: the DSR has started.
    """
    written = {k: v for k, v in received.record.data.items() if k != EVENT_ID}
    wanted = {k: v for k, v in received.mine.data().items() if k != EVENT_ID and v is not None}
    if written == wanted:
        return
    correction = replace(
        received.mine, event_id=CORRECTED_EVENT, supersedes_seq=received.record.seq
    )
    try:
        composition.evidence_log().write(request_id, correction, now)
    except Exception as exc:  # noqa: BLE001 - the DSR runs; the log says what is missing
        log_event(
            "received_correction_failed",
            level=logging.ERROR,
            request_id=request_id,
            reason=type(exc).__name__,
        )
        return
    log_event("received_corrected", request_id=request_id, superseded_seq=received.record.seq)


async def find_dsr(
    hub: TaskHub, request_id: str, *, show_input: bool = False
) -> df.DurableOrchestrationStatus | None:
    """The DSR of ``request_id`` in any letter case.

    Its instance id is the canonical id; a DSR started before ids were canonical is found
    under the exact id it was sent with. Only a DSR's orchestration is one: the task hub also
    holds the ticket notices (``notice-<32 hex>``), which no route may answer for as a DSR.
    """
    canonical = canonical_request_id(request_id)
    status = await find(hub, canonical, show_input=show_input)
    if status is None and request_id != canonical:
        status = await find(hub, request_id, show_input=show_input)
    return status if status is not None and status.name == ORCHESTRATOR else None


async def find(
    hub: TaskHub, instance_id: str, *, show_input: bool = False
) -> df.DurableOrchestrationStatus | None:
    """The instance's status, or None when the task hub does not know it."""
    return await hub.status(instance_id, show_input=show_input)


def document(
    status: df.DurableOrchestrationStatus,
    now: datetime,
    stored: ExportJob | None = None,
    *,
    legal: RecordedStatus | None = None,
) -> StatusDocument:
    """The DSR status document of one instance. The input only lends its deadline (``stored``)
    or, for an attempt just started, the legal facts it carries on (``legal``), while the
    orchestrator has not recorded them."""
    runtime = status.runtime_status.name if status.runtime_status else None
    if legal is None and stored is not None:
        legal = stored.deadline_record()
    return status_document(
        status.instance_id,
        runtime,
        status.custom_status,
        status.output,
        status.created_time,
        status.last_updated_time,
        now=now,
        legal=legal,
    )


def _job(
    request: ExportRequest, now: datetime, caller: Caller, tenant: Tenant | None = None
) -> ExportJob:
    received = request.received_at or now
    due = deadline(received, request.regulation)
    warning_days = (
        tenant.deadline_warning_days if tenant is not None else deadline_settings().warning_days
    )
    return ExportJob(
        request_id=request.request_id,
        user=request.user,
        user_id=request.user_object_id,
        policy=export_policy(),
        received_at=received.isoformat(),
        regulation=request.regulation.to_json(),
        legal_deadline=due.isoformat(),
        warning_at=warning_at(due, warning_days).isoformat(),
        callback_url=request.callback_url,
        requested_by=request.requested_by,
        language=request.language,
        submitted_by=caller.to_dict(),
        tenant_id=tenant.tenant_id if tenant is not None else None,
        quota_budget=tenant.quota_budget.to_json() if tenant is not None else None,
    )


def stored_job(status: df.DurableOrchestrationStatus) -> ExportJob | None:
    """The DSR as it was started (the orchestration input), or None when it is unreadable.

    The SDK hands the input over as text or decoded; :meth:`ExportJob.from_input` is the one
    reader of that shape.
    """
    raw = decode_payload(status.input_)
    try:
        return ExportJob.from_input(raw)
    except (TypeError, ValueError):
        return None


def _differences(job: ExportJob | None, request: ExportRequest) -> list[str]:
    """The fields the caller sent whose values differ from the stored DSR's."""
    if job is None:
        return []
    # The offset counts, not only the instant: GDPR's month is counted in the receipt's time.
    stored = {
        "callbackUrl": job.callback_url,
        "regulation": job.regulation,
        "receivedAt": job.received_at,
        "requestedBy": job.requested_by,
    }
    given = {
        "callbackUrl": request.callback_url,
        "regulation": request.regulation.to_json(),
        "receivedAt": request.received_at.isoformat() if request.received_at else None,
        "requestedBy": request.requested_by,
    }
    return [name for name in stored if name in request.sent and stored[name] != given[name]]


def _may_know_subject(caller: Caller, job: ExportJob | None) -> bool:
    """Whether ``caller`` may learn how its submission compares with the DSR ``job``: a
    ``DSR.Read`` caller, or the one that filed it (a ticketing system retrying its own request
    gets the duplicate's 202, or the fields it changed)."""
    if caller.may(Role.READ):
        return True
    filed = (job.submitted_by if job is not None else None) or {}
    return bool(filed) and filed.get("kind") == caller.kind and filed.get("id") == caller.id


def _same_subject(job: ExportJob | None, request: ExportRequest) -> bool:
    """Same user as given, or as resolved (an object id matching the resolved one)."""
    if job is None:
        return False
    known = {str(value).lower() for value in (job.user, job.user_id) if value}
    return request.user.lower() in known


def is_live(status: df.DurableOrchestrationStatus) -> bool:
    """Whether the instance still runs (its runtime state, not the phase it reports)."""
    runtime = status.runtime_status.name if status.runtime_status else ""
    return runtime in LIVE_STATES


# -- the use cases of the DSR routes (intake/http_api.py) -----------------------------------------


async def submit(hub: TaskHub, caller: Caller, payload: object, *, now: datetime) -> Done:
    """Accept a DSR; the same request again answers with the DSR already under way (202 for a
    duplicate too: a retrying ticket system sees the same answer every time)."""
    try:
        outcome = await start_or_get(hub, payload, now=now, source="http", caller=caller)
    except SettingsError:
        raise
    except Exception as exc:  # noqa: BLE001 - storage or task hub down: nothing was started
        raise _unavailable(exc) from None
    match outcome.verdict:
        case Admission.INVALID:
            raise Refused(Problem.INVALID, outcome.detail, outcome.errors)
        case Admission.CONFLICT:
            raise Refused(
                Problem.CONFLICT, outcome.detail, outcome.errors, "Request id already used"
            )
        case Admission.UNKNOWN_TENANT:
            raise unknown_tenant(outcome.detail)
    assert outcome.document is not None
    return Done(outcome.document.to_wire(), 202, location=f"/api/exports/{outcome.request_id}")


def _unavailable(exc: Exception) -> Refused:
    """Why nothing was started: what to fix when the export account refuses the app, or to
    send the request again later."""
    from dsr_export.adapters.failures import setup_error

    found = setup_error(exc)
    log_event(
        "intake_unavailable",
        level=logging.ERROR,
        reason=type(exc).__name__,
        code=found["code"] if found else None,
    )
    if found is not None:
        detail = str(found.get("hint") or found["message"])
        return Refused(Problem.MISCONFIGURED, detail, title="Service misconfigured")
    return Refused(
        Problem.UNAVAILABLE, "send the request again later", title="Temporarily unavailable"
    )


async def status(hub: TaskHub, request_id: str) -> Done:
    """The DSR's status document (never Durable's URLs, never the input); once purged on
    schedule, the evidence still answers (phase, dates, outcome, the data)."""
    # The input is read only to lend a not-yet-started DSR its deadline.
    existing = await find_dsr(hub, request_id, show_input=True)
    if existing is None:
        records = _evidence_or_none(request_id)
        purged = (
            lifecycle.purged_status(records, review_required=package_review_required())
            if records
            else None
        )
        if purged is None:
            raise Refused.unknown(request_id)
        return Done(purged.to_wire())
    doc = document(existing, composition.now(), stored_job(existing))
    if doc.terminal:
        records = _evidence_or_none(request_id)
        if records:
            doc = replace(
                doc,
                data=lifecycle.data_state(records),
                package=lifecycle.package_state(records, review_required=package_review_required()),
            )
    return Done(doc.to_wire())


def package_review_required() -> bool:
    """Whether packages are reviewed before release, reading only ``PACKAGE_REVIEW`` (a status
    read must not fail on another package setting, such as the organisation's profile)."""
    return os.environ.get("PACKAGE_REVIEW", "off").strip().lower() == "required"


def _evidence_or_none(request_id: str) -> list[EvidenceRecord] | None:
    """The evidence, to say what became of the data; None when it cannot be read now (the
    status the task hub holds is still the answer, without that part)."""
    try:
        return evidence_records(request_id)
    except Exception as exc:  # noqa: BLE001 - storage trouble must not hide the status
        log_event(
            "evidence_unreadable",
            level=logging.WARNING,
            request_id=request_id,
            reason=type(exc).__name__,
        )
        return None


def evidence(request_id: str) -> Done:
    """The DSR's evidence records, as stored, and whether their hash chain verifies."""
    lines = composition.evidence_log().read(canonical_request_id(request_id))
    if not lines:
        raise no_evidence(request_id)
    return Done(evidence_document(request_id, lines))


def no_evidence(request_id: str) -> Refused:
    """The evidence route's 404: no log, or a DSR out of the caller's reach (one answer)."""
    return Refused(Problem.NOT_FOUND, f"no evidence for requestId {request_id}")


async def cancel(hub: TaskHub, caller: Caller, request_id: str, event: dict[str, str]) -> Done:
    """Ask the orchestration to stop; it revokes the SAS and ends ``cancelled``. The reason is
    free text from a ticket: only its code and hash go on (``event``), never to the log."""
    existing = await find_dsr(hub, request_id)
    if existing is None:
        raise Refused.unknown(request_id)
    doc = document(existing, composition.now())
    if not is_live(existing) or doc.phase in TERMINAL_PHASES or doc.phase == Phase.FINALIZING:
        raise Refused.conflict(f"the DSR is {doc.phase}", "DSR already finished")
    try:
        await hub.raise_event(existing.instance_id, CANCEL_EVENT, event)
    except InstanceGone:
        raise Refused.conflict("the DSR has just ended", "DSR already finished") from None
    except InstanceUnknown:
        raise Refused.unknown(request_id) from None
    log_event(
        "dsr_cancel_requested",
        request_id=existing.instance_id,
        phase=doc.phase,
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    return Done(doc.to_wire(), 202, location=f"/api/exports/{existing.instance_id}")
