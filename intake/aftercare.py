"""The DSR's life after the export, as use cases: deliver the data, extend the deadline, retry
a failed DSR, erase the data (the routes are in :mod:`intake.lifecycle_api`).

Each checks the DSR is in the state its action needs (a conflict otherwise, saying which state
it is in and what to do), records what it did in the DSR's evidence (who, when, what; never a
URL, a SAS or free text: an operator's reason is kept as its hash) and tells the ticket. Each
takes the task hub, the caller and its typed inputs and returns a :class:`~intake.verdicts.Done`
or refuses (:class:`~intake.verdicts.Refused`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import azure.durable_functions as df

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub
from dsr_export.domain import events, lifecycle
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.callers import Caller
from dsr_export.domain.evidence import EvidenceRecord, Kind
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import FieldError
from dsr_export.domain.status import TERMINAL_PHASES, Phase, StatusDocument
from dsr_export.domain.steps import EXTEND_EVENT, ORCHESTRATOR
from dsr_export.settings import export_policy, lifecycle_settings
from intake import lifecycle_actions, package_api
from intake.service import document, evidence_records, find, find_dsr, is_live, stored_job
from intake.verdicts import Done, Problem, Refused

#: Phases a failed DSR may be retried from.
RETRYABLE: Final = frozenset({Phase.FAILED.value, Phase.TIMED_OUT.value})
#: Phases whose data may be erased: the DSR's orchestration has ended.
ENDED: Final = frozenset(phase.value for phase in TERMINAL_PHASES)


@dataclass
class Found:
    """The DSR a use case acts on: its instance (None once purged), its status document, and
    its evidence, read only by the use cases that need it, once."""

    request_id: str
    status: df.DurableOrchestrationStatus | None
    doc: StatusDocument
    _records: list[EvidenceRecord] | None = None

    def records(self) -> list[EvidenceRecord]:
        if self._records is None:
            self._records = evidence_records(self.request_id)
        return self._records

    @property
    def phase(self) -> str:
        return self.doc.phase

    @property
    def instance(self) -> df.DurableOrchestrationStatus:
        """The instance of a DSR found live in the task hub (the callers that allow a purged
        one read :attr:`status`)."""
        assert self.status is not None
        return self.status


async def found(hub: TaskHub, request_id: str, *, allow_purged: bool = False) -> Found:
    """The DSR, or refused. A DSR whose history was purged is found by its evidence when
    ``allow_purged``."""
    status = await find_dsr(hub, request_id, show_input=True)
    if status is not None:
        return Found(request_id, status, document(status, composition.now(), stored_job(status)))
    records = evidence_records(request_id)
    purged = lifecycle.purged_status(records) if records else None
    if purged is None:
        raise Refused.unknown(request_id)
    if not allow_purged:
        raise Refused.conflict("the DSR's history was purged; only its evidence remains")
    return Found(request_id, None, purged, records)


# -- deliver ------------------------------------------------------------------------------------


async def deliver(hub: TaskHub, caller: Caller, request_id: str) -> Done:
    """The subject's package links when it has one (with ``PACKAGE_REVIEW=required``, nothing
    before the package is approved); otherwise a short-lived read + list link to a completed
    DSR's data. Returned once, never stored."""
    dsr = await found(hub, request_id)
    _delivered_yet(dsr)
    # The subject's package, when there is one (or review requires it): intake/package_api.py.
    packaged = await package_api.deliver_package(hub, dsr.instance, dsr.records(), caller)
    if packaged is not None:
        return packaged
    container = dsr.doc.container
    storage = composition.export_storage_of(dsr.request_id)
    if not isinstance(container, str) or not storage.has_data(container):
        raise Refused.conflict("the exported data no longer exists")
    minutes = lifecycle_settings().download_link_minutes
    url, expires = storage.download_link(
        container, composition.real_now(), timedelta(minutes=minutes)
    )
    now = composition.now()
    _record_delivery(dsr, container, expires.isoformat(), caller, now)
    status = dsr.instance
    log_event(
        "dsr_delivered",
        request_id=status.instance_id,
        caller_kind=caller.kind,
        caller_id=caller.id,
        expires_at=expires.isoformat(),
    )
    await lifecycle_actions.notify(
        hub,
        lifecycle_actions.job_of(status),
        events.DELIVERED,
        now,
        {"expiresAt": expires.isoformat()},
    )
    body = {
        "requestId": status.instance_id,
        "url": url,
        "expiresAt": expires.isoformat(),
        "container": container,
        "permissions": ["read", "list"],
        "manifestBlob": "manifest.json",
    }
    return Done(body, 201, no_store=True)


def _delivered_yet(dsr: Found) -> None:
    """Refused unless the DSR completed and its data was not deleted."""
    if dsr.phase != Phase.COMPLETED.value:
        raise Refused.conflict(f"the DSR is {dsr.phase}: only a completed DSR has data to deliver")
    deleted = lifecycle.last_deletion(dsr.records())
    if deleted is not None:
        raise Refused.conflict(
            f"the data was deleted ({lifecycle.receipt(deleted)['reason']}, receipt "
            f"{deleted.data.get('receiptId')})"
        )


def _record_delivery(
    dsr: Found, container: str, expires: str, caller: Caller, now: datetime
) -> None:
    manifest = dsr.doc.manifest if isinstance(dsr.doc.manifest, dict) else {}
    delivered = sum(1 for r in dsr.records() if r.kind is Kind.EXPORT_DELIVERED)
    record = entries.ExportDelivered(
        event_id=f"delivered-{delivered + 1}-{expires}",
        container=container,
        channel="download-link",
        permissions="read,list",
        expires_at=expires,
        manifest_sha256=(manifest or {}).get("manifestSha256"),
        actor_kind=caller.kind,
        actor_id=caller.id,
    )
    composition.evidence_log().write(dsr.instance.instance_id, record, now)


# -- extend -------------------------------------------------------------------------------------


async def extend(hub: TaskHub, caller: Caller, request_id: str, ask: ExtensionAsk) -> Done:
    """Move the legal deadline within the regulation's cap; the DSR applies it, re-arms its
    warning and overdue notices and tells the ticket (``deadline.extended``)."""
    dsr = await found(hub, request_id)
    status = dsr.instance
    if dsr.phase in ENDED or dsr.phase == Phase.FINALIZING.value or not is_live(status):
        hint = " (retry it first)" if dsr.phase in RETRYABLE else ""
        raise Refused.conflict(f"the DSR is {dsr.phase}: only a running DSR is extended{hint}")
    job = lifecycle_actions.job_of(status)
    if job is None:
        raise Refused.conflict("the DSR's state cannot be read")
    now = composition.now()
    try:
        # Judged against the deadline as it stands, to refuse at once what can never pass; the
        # DSR judges it again in turn, after the asks that came before it.
        job.extended_by(ask, now, custom_max_days=lifecycle_settings().custom_extension_max_days)
    except ExtensionRefused as exc:
        raise refused_extension(exc) from None
    ask_id = f"ask_{uuid.uuid4().hex}"
    # The ask is recorded before the DSR is told: the event only announces it, so an event
    # the task hub drops (or repeats) loses (or doubles) nothing.
    asked = entries.ExtensionAsked(
        event_id=f"extension-asked:{ask_id}",
        ask_id=ask_id,
        days=ask.days,
        months=ask.months,
        reason_code=ask.reason_code,
        reason_sha256=ask.reason_sha256,
        actor_kind=caller.kind,
        actor_id=caller.id,
    )
    record = composition.evidence_log().write(status.instance_id, asked, now)
    await hub.raise_event(status.instance_id, EXTEND_EVENT, {"askId": ask_id})
    log_event(
        "dsr_extended",
        request_id=status.instance_id,
        ask_id=ask_id,
        previous_deadline=job.legal_deadline,
        extension_days=ask.days,
        extension_months=ask.months,
        reason_code=ask.reason_code,
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    return _pending(status.instance_id, ask_id, ask, now.isoformat(), record)


def _pending(
    request_id: str, ask_id: str, ask: ExtensionAsk, asked_at: str, record: EvidenceRecord
) -> Done:
    """Accepted, pending: the deadline it gives is known once the DSR applied it after every
    ask before it (it may still refuse it then, past the regulation's cap)."""
    location = f"/api/exports/{request_id}"
    body = {
        "requestId": request_id,
        "askId": ask_id,
        "state": "pending",
        "asked": {
            key: value
            for key, value in (("days", ask.days), ("months", ask.months))
            if value is not None
        },
        "reasonCode": ask.reason_code,
        "askedAt": asked_at,
        "evidence": {"seq": record.seq, "hash": record.hash},
        "statusUrl": location,
        "detail": (
            "the DSR applies asks in the order they arrive; its status lists this one under "
            "extensions (askId) once applied, or under refusedExtensions"
        ),
    }
    return Done(body, 202, location=location)


def refused_extension(exc: ExtensionRefused) -> Refused:
    error = FieldError(exc.pointer, exc.detail)
    return Refused(Problem.INVALID, exc.detail, [error], "Extension not allowed")


# -- retry --------------------------------------------------------------------------------------


async def retry(hub: TaskHub, caller: Caller, request_id: str, why: str) -> Done:
    """Run a failed or timed-out DSR again under the same id and legal deadline, in a fresh
    container; the same call twice starts one attempt."""
    dsr = await found(hub, request_id)
    status = dsr.instance
    location = f"/api/exports/{status.instance_id}"
    if dsr.phase not in RETRYABLE or is_live(status):
        if is_live(status) and int(dsr.doc.attempt or 1) > 1:
            # Already retried (this call, sent twice): the attempt under way is the answer.
            return Done(dsr.doc.to_wire(), 202, location=location)
        raise Refused.conflict(f"the DSR is {dsr.phase}: only a failed or timed-out DSR is retried")
    job = lifecycle_actions.job_of(status)
    if job is None:
        raise Refused.conflict("the DSR's state cannot be read")
    ended = lifecycle_actions.output_of(status)
    attempt = job.next_attempt(ended).replace(policy=export_policy())
    now = composition.now()
    previous_code = _record_retry(dsr, attempt.attempt, ended, why, caller, now)
    if await hub.start(ORCHESTRATOR, status.instance_id, attempt.to_input()):
        log_event(
            "dsr_retried",
            request_id=status.instance_id,
            attempt=attempt.attempt,
            previous_phase=dsr.phase,
            previous_code=previous_code,
            caller_kind=caller.kind,
            caller_id=caller.id,
        )
    started = await find(hub, status.instance_id, show_input=True)
    if started is None:  # gone between two calls: transient
        raise RuntimeError(f"instance {status.instance_id} vanished after a retry")
    answer = document(started, now, legal=attempt.legal_record())
    return Done(answer.to_wire(), 202, location=location)


def _record_retry(
    dsr: Found, attempt: int, ended: dict[str, Any], why: str, caller: Caller, now: datetime
) -> object:
    """The ``retried`` record; the error code the attempt before ended with."""
    error = ended.get("error") if isinstance(ended.get("error"), dict) else {}
    previous_code = (error or {}).get("code")
    retried = entries.Retried(
        event_id=f"retried-{attempt}",
        attempt=attempt,
        previous_phase=dsr.phase,
        previous_error_code=previous_code,
        container=ended.get("container"),
        reason_sha256=lifecycle_actions.reason_sha256(why),
        actor_kind=caller.kind,
        actor_id=caller.id,
    )
    composition.evidence_log().write(dsr.instance.instance_id, retried, now)
    return previous_code


# -- erase --------------------------------------------------------------------------------------


async def erase(hub: TaskHub, caller: Caller, request_id: str, why: str) -> Done:
    """Delete the DSR's exported data now and answer with the deletion receipt."""
    dsr = await found(hub, request_id, allow_purged=True)
    status = dsr.status
    if dsr.phase not in ENDED or (status is not None and is_live(status)):
        raise Refused.conflict(f"the DSR is {dsr.phase}: cancel it first, or wait until it ends")
    request_id = dsr.doc.request_id
    now = composition.now()
    done = lifecycle_actions.delete_data(
        request_id, now=now, kind=Kind.ERASED, actor=caller, reason=why
    )
    if done is None:  # an earlier erasure may have deleted it and lost its receipt
        done = lifecycle_actions.unreceipted_deletion(
            request_id, dsr.records(), now=now, actor=caller, reason=why
        )
    if done is None:
        earlier = lifecycle.last_deletion(dsr.records())
        detail = "the DSR has no exported data"
        if earlier is not None:
            detail += f" (deleted before: receipt {earlier.data.get('receiptId')})"
        raise Refused.conflict(detail)
    receipt = done.receipt
    log_event(
        "dsr_erased",
        request_id=request_id,
        receipt_id=receipt["receiptId"],
        blob_count=receipt.get("blobCount"),
        total_bytes=receipt.get("totalBytes"),
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    if status is not None:
        await lifecycle_actions.notify(
            hub,
            lifecycle_actions.job_of(status),
            events.ERASED,
            now,
            {"receiptId": receipt["receiptId"], "deletedAt": receipt["deletedAt"]},
        )
    return Done(receipt, 200)
