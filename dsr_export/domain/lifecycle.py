"""A DSR after its export, as its evidence tells it: deletion receipts, what became of the data,
and the status of a DSR whose durable history was purged.

The evidence log outlives both the data and the task hub's history, so it is where a ticket's
question is answered once they are gone. Every shape here is built from evidence records only
(pseudonymous ids, no free text), so none of them can carry personal data.

Pure: records and moments are passed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from dsr_export.domain.evidence import EvidenceRecord, Kind
from dsr_export.domain.status import (
    DataFate,
    PackageStage,
    PackageState,
    Phase,
    RecordedStatus,
    ReviewState,
    StatusDocument,
    status_document,
)

#: Why data was deleted, as a receipt says it.
ERASURE: Final = "erasure_request"
RETENTION: Final = "retention"
_DELETIONS: Final = {Kind.ERASED: ERASURE, Kind.RETENTION_DELETED: RETENTION}


def receipt_id(request_id: str, containers: Sequence[str]) -> str:
    """The receipt's id: the same deletion (these containers of this DSR) always gets the same
    one, so a retried deletion is recorded once."""
    digest = hashlib.sha256("\n".join([request_id, *sorted(containers)]).encode()).hexdigest()
    return f"rcpt_{digest[:24]}"


def receipt(record: EvidenceRecord) -> dict[str, Any]:
    """The deletion receipt a record of kind ``erased`` or ``retention_deleted`` attests."""
    if record.kind not in _DELETIONS:
        raise ValueError(f"a {record.kind.value!r} record is not a deletion receipt")
    data = record.data
    by = (
        {"kind": data.get("actorKind"), "id": data.get("actorId")}
        if data.get("actorKind")
        else None
    )
    body = {
        "receiptId": data.get("receiptId"),
        "requestId": record.request_id,
        "reason": _DELETIONS[record.kind],
        "deletedAt": record.at,
        "deletedBy": by,
        "container": data.get("container"),
        "containerCount": data.get("containerCount"),
        "blobCount": data.get("blobCount"),
        "totalBytes": data.get("totalBytes"),
        "manifestSha256": data.get("manifestSha256"),
        "retentionDays": data.get("retentionDays"),
        "evidence": {"seq": record.seq, "hash": record.hash},
    }
    return {key: value for key, value in body.items() if value is not None}


def last_deletion(records: Iterable[EvidenceRecord]) -> EvidenceRecord | None:
    """The deletion receipt written after the DSR's last export, if any: data exported again by
    a retried attempt after an erasure is not deleted yet."""
    found: EvidenceRecord | None = None
    for record in records:
        if record.kind in _DELETIONS:
            found = record
        elif record.kind in {Kind.COMPLETED, Kind.RETRIED}:
            found = None
    return found


def data_state(records: Sequence[EvidenceRecord]) -> DataFate:
    """What the status document says of the data after the export: ``deleted`` (with the
    receipt) or the deliveries made so far."""
    deletion = last_deletion(records)
    deliveries = sum(1 for record in records if record.kind is Kind.EXPORT_DELIVERED)
    if deletion is None:
        return DataFate(deliveries)
    return DataFate(
        deliveries,
        state="deleted",
        reason=_DELETIONS[deletion.kind],
        deleted_at=deletion.at,
        receipt_id=_text(deletion.data.get("receiptId")),
    )


#: Records after which an earlier package is gone or stale: a new export, or its deletion.
_PACKAGE_GONE: Final = frozenset({Kind.COMPLETED, Kind.RETRIED, *_DELETIONS})


def package_state(
    records: Sequence[EvidenceRecord], *, review_required: bool
) -> PackageState | None:
    """The subject's package of the DSR's last export, as its evidence tells it (``packaged``,
    ``package_reviewed``, a ``package-link`` delivery of that package); None before one was
    built, and once the data (the package with it) was deleted. Hashes, counts and a time:
    never a file's name."""
    packaged: EvidenceRecord | None = None
    approved = sent = False
    for record in records:
        if record.kind in _PACKAGE_GONE:
            packaged, approved, sent = None, False, False
        elif record.kind is Kind.PACKAGED:
            packaged, sent = record, False
        elif record.kind is Kind.PACKAGE_REVIEWED:
            approved = True
        elif record.kind is Kind.EXPORT_DELIVERED:
            sent = sent or _links_to(record, packaged)
    if packaged is None:
        return None
    return PackageState(
        state=_stage(approved=approved, sent=sent),
        package_sha256=str(packaged.data.get("packageSha256")),
        parts=_count(packaged.data.get("partCount")),
        packaged_at=packaged.at,
        review=_review(approved=approved, required=review_required),
    )


def _links_to(delivery: EvidenceRecord, packaged: EvidenceRecord | None) -> bool:
    """Whether a delivery handed out a link to this package (not to an earlier one)."""
    sha = delivery.data.get("packageSha256")
    return packaged is not None and sha is not None and sha == packaged.data.get("packageSha256")


def _stage(*, approved: bool, sent: bool) -> PackageStage:
    if sent:
        return PackageStage.SENT
    return PackageStage.APPROVED if approved else PackageStage.BUILT


def _review(*, approved: bool, required: bool) -> ReviewState:
    if approved:
        return ReviewState.APPROVED
    return ReviewState.PENDING if required else ReviewState.OFF


def _ended(records: Sequence[EvidenceRecord]) -> tuple[str | None, str | None, str | None]:
    """The last attempt's outcome: phase, when, and the error code (None while running)."""
    phase = at = code = None
    for record in records:
        if record.kind is Kind.RETRIED:
            phase = at = code = None
        elif record.kind is Kind.COMPLETED:
            phase, at, code = Phase.COMPLETED.value, record.at, None
        elif record.kind is Kind.FINISHED:
            raw = record.data.get("phase")
            phase, at = (str(raw) if raw else Phase.FAILED.value), record.at
            error = record.data.get("errorCode")
            code = str(error) if error else None
        elif record.kind is Kind.HISTORY_PURGED and phase is None and record.data.get("endedPhase"):
            # Purged on the word of the DSR's own output: its evidence did not say how it ended.
            phase = str(record.data["endedPhase"])
            ended = record.data.get("endedAt")
            at = str(ended) if ended else record.at
            error = record.data.get("errorCode")
            code = str(error) if error else None
    return phase, at, code


def received_record(records: Sequence[EvidenceRecord]) -> EvidenceRecord | None:
    """The ``received`` record that describes the DSR: the last one (a correction, written when
    the first described a concurrent submission whose start lost, supersedes it)."""
    return next((r for r in reversed(records) if r.kind is Kind.RECEIVED), None)


def purged_status(
    records: Sequence[EvidenceRecord], *, review_required: bool = False
) -> StatusDocument | None:
    """The status document of a DSR whose durable history was purged, from its evidence: its
    phase, dates and outcome, the deadline as received (extensions included), the data's
    fate and the package. None when the evidence does not say the history was purged."""
    if not any(record.kind is Kind.HISTORY_PURGED for record in records):
        return None
    received = received_record(records)
    phase, ended_at, code = _ended(records)
    deadline = received.data.get("deadline") if received else None
    for record in records:
        if record.kind is Kind.EXTENDED and record.data.get("deadline"):
            deadline = record.data["deadline"]
    operation = next(
        (r.data.get("operationId") for r in reversed(records) if r.data.get("operationId")),
        None,
    )
    recorded = RecordedStatus(
        phase=phase or Phase.FAILED.value,
        completed_at=ended_at,
        received_at=_text(received.data.get("receivedAt")) if received else None,
        deadline=_text(deadline),
        operation_id=_text(operation),
    )
    # No clock: the legal clock of a purged DSR is not counted any more.
    doc = status_document(records[0].request_id, None, recorded.to_dict(), None)
    return dataclasses.replace(
        doc,
        terminal=True,
        history_purged=True,
        accepted_at=received.at if received else None,
        error={"code": code} if code else None,  # the code alone, as the evidence has it
        data=data_state(records),
        package=package_state(records, review_required=review_required),
        source="evidence",
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) else 1


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def earlier_dsr(records: Sequence[EvidenceRecord]) -> dict[str, Any] | None:
    """What the evidence says of a DSR that ran under this id, for an intake that finds no
    instance of it in the task hub (purged): how and when it ended, the deletion receipt,
    whether its history was purged. None when the evidence holds nothing but the receipt of the
    request (a delivery that died before it started the DSR, retried: it may start it)."""
    if not any(record.kind is not Kind.RECEIVED for record in records):
        return None
    phase, at, code = _ended(records)
    deletion = last_deletion(records)
    found = {
        "phase": phase,
        "endedAt": at,
        "errorCode": code,
        "receiptId": deletion.data.get("receiptId") if deletion is not None else None,
        "historyPurged": any(record.kind is Kind.HISTORY_PURGED for record in records),
    }
    return {key: value for key, value in found.items() if value is not None}


def earlier_dsr_detail(request_id: str, earlier: Mapping[str, Any]) -> str:
    """The sentence a refused resubmission reads: ids, phases and dates only."""
    ended = (
        f"ended {earlier['phase']} at {earlier.get('endedAt')}"
        if earlier.get("phase")
        else "never recorded how it ended"
    )
    code = f" ({earlier['errorCode']})" if earlier.get("errorCode") else ""
    receipt = (
        f"; its data was deleted (receipt {earlier['receiptId']})"
        if earlier.get("receiptId")
        else ""
    )
    purged = "; its history was purged" if earlier.get("historyPurged") else ""
    return (
        f"requestId {request_id} was used for an earlier DSR that {ended}{code}{receipt}"
        f"{purged}: its evidence stands, so the id is not used again; send a new requestId"
    )


def evidence_complete(records: Sequence[EvidenceRecord]) -> bool:
    """Whether the evidence says how the DSR's last attempt ended (received, then completed
    with the SAS revoked, or finished): only then may the history that backs it be purged."""
    if not records or records[0].kind is not Kind.RECEIVED:
        return False
    phase, _, _ = _ended(records)
    if phase is None:
        return False
    if phase == Phase.COMPLETED.value:
        return any(record.kind is Kind.SAS_REVOKED for record in records)
    return True


def ended_at(output: object, fallback: datetime | None) -> datetime | None:
    """When a DSR ended, from its orchestration output (``completedAt``, the orchestrator's own
    clock), else ``fallback`` (the task hub's last update)."""
    recorded = RecordedStatus.read(output)
    if recorded is not None and isinstance(recorded.completed_at, str):
        try:
            return datetime.fromisoformat(recorded.completed_at)
        except ValueError:
            pass
    return fallback
