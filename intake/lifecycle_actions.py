"""The DSR after its export, shared by the lifecycle routes and the retention run: what the
evidence says of a DSR, deleting its data with a receipt, purging its history, and telling the
ticket of what happened after the DSR's own orchestration ended.

Every action here is recorded in the DSR's evidence before it is answered, idempotently (the
same deletion has the same receipt id; a retried route appends nothing twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import azure.durable_functions as df

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub, decode_payload
from dsr_export.domain import events, lifecycle
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.callers import Caller
from dsr_export.domain.evidence import EvidenceRecord, Kind
from dsr_export.domain.job import ExportJob
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import canonical_request_id
from dsr_export.domain.status import RecordedStatus
from dsr_export.domain.steps import NOTICE_ORCHESTRATOR, SendCallback
from intake.service import stored_job

#: Who deletes data on schedule, as the evidence names it.
RETENTION_ACTOR: Final = Caller("system", "retention", frozenset())


def output_of(status: df.DurableOrchestrationStatus) -> dict[str, Any]:
    """The orchestration's output as a dict (the SDK hands it over as text or decoded)."""
    raw = decode_payload(status.output)
    return raw if isinstance(raw, dict) else {}


def reason_sha256(reason: str) -> str:
    """The evidence keeps the hash of an operator's reason; the ticket keeps its words."""
    return hashlib.sha256(reason.encode()).hexdigest()


@dataclass(frozen=True)
class Deletion:
    """A deletion done and recorded: its receipt, and whether anything was there to delete."""

    receipt: dict[str, Any]
    deleted: bool


def delete_data(
    request_id: str,
    *,
    now: datetime,
    kind: Kind,
    actor: Caller,
    reason: str | None = None,
    retention_days: int | None = None,
    ended_at: str | None = None,
) -> Deletion | None:
    """Delete every container of the DSR and write the deletion receipt to its evidence.

    None when the DSR has no container left (nothing to delete, nothing recorded).
    """
    removed = composition.export_storage_of(request_id).delete_data(request_id)
    if not removed.containers:
        return None
    receipt_id = lifecycle.receipt_id(canonical_request_id(request_id), removed.containers)
    entry = entries.deletion(
        kind,
        event_id=receipt_id,
        receipt_id=receipt_id,
        container=removed.containers[-1],
        container_count=len(removed.containers),
        blob_count=removed.blob_count,
        total_bytes=removed.total_bytes,
        manifest_sha256=removed.manifest_sha256,
        reason_sha256=reason_sha256(reason) if reason else None,
        retention_days=retention_days,
        ended_at=ended_at,
        actor_kind=actor.kind,
        actor_id=actor.id,
    )
    return _receipted(request_id, entry, now, removed.containers)


def _receipted(
    request_id: str, entry: entries.Entry, now: datetime, containers: tuple[str, ...]
) -> Deletion:
    record = composition.evidence_log().write(request_id, entry, now)
    doc = lifecycle.receipt(record)
    doc["containers"] = list(containers)
    return Deletion(doc, deleted=True)


def unreceipted_deletion(
    request_id: str,
    dsr_records: list[EvidenceRecord],
    *,
    now: datetime,
    actor: Caller,
    reason: str | None,
) -> Deletion | None:
    """The receipt of an erasure that deleted the data but never recorded it (the evidence
    account stopped answering, or the host died, between the two), written when it is sent
    again and finds nothing left: without it the erasure could never be receipted.

    Only for a completed export with no deletion receipt after it; what it held is taken from
    its ``completed`` record (the same counts the deletion would have found). None otherwise.
    """
    completed: EvidenceRecord | None = None
    for record in dsr_records:
        if record.kind is Kind.COMPLETED:
            completed = record
        elif record.kind is Kind.RETRIED:
            completed = None
    if completed is None or lifecycle.last_deletion(dsr_records) is not None:
        return None
    data = completed.data
    container = data.get("container")
    if not isinstance(container, str) or not container:
        return None
    receipt_id = lifecycle.receipt_id(canonical_request_id(request_id), [container])
    entry = entries.deletion(
        Kind.ERASED,
        event_id=receipt_id,
        receipt_id=receipt_id,
        container=container,
        container_count=1,
        blob_count=data.get("blobCount"),
        total_bytes=data.get("totalBytes"),
        manifest_sha256=data.get("manifestSha256"),
        reason_sha256=reason_sha256(reason) if reason else None,
        actor_kind=actor.kind,
        actor_id=actor.id,
    )
    return _receipted(request_id, entry, now, (container,))


async def notify(
    hub: TaskHub,
    job: ExportJob | None,
    event_type: str,
    now: datetime,
    data: dict[str, Any],
) -> None:
    """Tell the ticket (when the DSR named a callback URL) through a notice orchestration: the
    same signing and back-off as the DSR's own callbacks, and nothing lost when it fails."""
    if job is None or job.callback_url is None:
        return
    event = events.build_event(event_type, now, {"requestId": job.request_id, **data})
    key = json.dumps([job.request_id, event_type, data], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    payload = SendCallback(
        request_id=job.request_id,
        url=job.callback_url,
        message_id=f"msg_{digest}",
        event=event,
    )
    try:
        await hub.start(NOTICE_ORCHESTRATOR, f"notice-{digest}", payload.to_dict())
    except Exception as exc:  # noqa: BLE001 - storage or task hub trouble
        # What the route did is done and recorded (the evidence has it, the answer says it):
        # a ticket callback that could not be queued must not turn that into a 500.
        log_event(
            "callback_queue_failed",
            level=logging.WARNING,
            request_id=job.request_id,
            event_type=event_type,
            reason=type(exc).__name__,
        )
        return
    log_event("callback_queued", request_id=job.request_id, event_type=event_type)


def job_of(status: df.DurableOrchestrationStatus) -> ExportJob | None:
    """The DSR's job as it stands: the input, with the legal facts of the latest status (an
    extension moves the deadline after the start)."""
    job = stored_job(status)
    if job is None:
        return None
    for source in (status.custom_status, output_of(status)):
        recorded = RecordedStatus.read(source)
        if recorded is not None and recorded.deadline:
            job = job.replace(
                legal_deadline=recorded.deadline,
                warning_at=recorded.warning_at or job.warning_at,
                original_deadline=recorded.original_deadline or job.original_deadline,
                extensions=tuple(recorded.extensions or job.extensions),
                attempt=int(recorded.attempt or job.attempt),
            )
    return job
