"""The DSR status document: what the ticket and the operator see, defined here once.

Two typed shapes and one wire mapping each (camelCase JSON, :class:`~dsr_export.domain.steps.Wire`),
in the manner of the Azure SDK's ``_models`` beside ``_serialize``: :class:`RecordedStatus` is
what the orchestrator stores (its custom status while a DSR runs, its output at the end), and
:class:`StatusDocument` is what ``GET /api/exports/{id}``, the list, submit, cancel and retry
answer, serialized by :meth:`StatusDocument.to_wire` only. :func:`status_document` is the one
function that builds it: from what Durable keeps (runtime status, custom status, output),
never from the orchestration input beyond the legal facts it lends a DSR that has not written
its status yet, and never with Durable's management URLs (they embed the system key). After a
purge the evidence fills the record (``lifecycle.purged_status``). The OpenAPI schema
``StatusDocument`` lists exactly these fields (``tests/unit/test_openapi.py``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

from dsr_export.domain.deadlines import view
from dsr_export.domain.errors import cancelled
from dsr_export.domain.steps import Wire


class Phase(enum.StrEnum):
    """Where a DSR is. The last four are terminal."""

    ACCEPTED = "accepted"
    RESOLVING_USER = "resolving_user"
    PREPARING_STORAGE = "preparing_storage"
    SUBMITTING = "submitting"
    EXPORTING = "exporting"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED})
#: Phases after which the legal clock no longer runs: the data was delivered, or the request
#: withdrawn. A failed or timed-out DSR still owes the data subject an answer, so its deadline
#: (and overdue) still counts.
OBLIGATION_CLOSED = frozenset({Phase.COMPLETED, Phase.CANCELLED})


@dataclass(frozen=True)
class ShownAsRecorded(Wire):
    """The fields the status document shows as the orchestrator recorded them: declared once,
    for both :class:`RecordedStatus` (what is stored) and :class:`StatusDocument` (what is
    shown)."""

    _omit_none: ClassVar[bool] = True

    #: The Entra tenant the DSR belongs to (``TENANCY=multi``; absent in a single-tenant app).
    tenant_id: str | None = None
    container: str | None = None
    operation_id: str | None = None
    submitted_at: str | None = None
    graph_status: str | None = None
    progress: Any = None
    poll_round: int | None = None
    next_check_at: str | None = None
    received_at: str | None = None
    regulation: Any = None
    submitted_by: Any = None
    original_deadline: str | None = None
    extensions: list[Any] | None = None
    refused_extensions: list[Any] | None = None
    attempt: int | None = None
    attempts: list[Any] | None = None
    callbacks: Any = None
    error: Any = None
    manifest: Any = None
    sas: Any = None
    completed_at: str | None = None


@dataclass(frozen=True)
class RecordedStatus(ShownAsRecorded):
    """What the orchestrator records of a DSR: its custom status while it runs, its output at
    the end. The stored part of the status document, its fields and their camelCase wire names
    defined here once: the job writes it (:meth:`ExportJob.recorded`), :func:`status_document`
    reads it, and after a purge the evidence fills it (``lifecycle.purged_status``). Besides
    what the document shows as recorded, the fields it derives (the phase, the deadline)."""

    request_id: str | None = None
    phase: str | None = None
    deadline: str | None = None
    warning_at: str | None = None
    #: Which containers this DSR has used: a retry continues after them (never shown).
    submit_attempt: int | None = None

    @classmethod
    def read(cls, source: object) -> RecordedStatus | None:
        """The record in a custom status or an output; None when it is not a JSON object
        (no status written yet, or an output that is not the orchestrator's)."""
        return cls.from_dict(dict(source)) if isinstance(source, Mapping) else None


@dataclass(frozen=True)
class DataFate(Wire):
    """What became of the data after the export, from the evidence: deliveries so far, and
    ``state: deleted`` with the receipt once erased or deleted on schedule."""

    _omit_none: ClassVar[bool] = True

    deliveries: int
    state: str | None = None
    reason: str | None = None
    deleted_at: str | None = None
    receipt_id: str | None = None


class PackageStage(enum.StrEnum):
    """How far the subject's package has come."""

    BUILT = "built"
    APPROVED = "approved"
    SENT = "sent"


class ReviewState(enum.StrEnum):
    """The package's review before release (``PACKAGE_REVIEW``)."""

    OFF = "off"
    PENDING = "pending"
    APPROVED = "approved"


@dataclass(frozen=True)
class PackageState(Wire):
    """The subject's package as the status shows it, from the evidence: hashes and counts,
    never a file's name or content."""

    state: PackageStage
    package_sha256: str
    parts: int
    packaged_at: str
    review: ReviewState


@dataclass(frozen=True, kw_only=True)
class StatusDocument(ShownAsRecorded):
    """The DSR status document (OpenAPI ``StatusDocument``; the list's items are these too).

    Immutable: a use case that adds what the evidence says (:attr:`data`, :attr:`package`)
    makes a new one with :func:`dataclasses.replace`.
    """

    _omit_none: ClassVar[bool] = True

    request_id: str
    phase: str
    terminal: bool
    accepted_at: str | None = None
    updated_at: str | None = None
    #: The legal deadline as seen at read time (see :func:`status_document`).
    deadline: str | None = None
    days_left: int | None = None
    deadline_warning: bool = False
    overdue: bool = False
    # -- from the evidence ---------------------------------------------------------------------
    data: DataFate | None = None
    package: PackageState | None = None
    history_purged: bool | None = None
    source: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object every route answers: the one serializer of the document. The
        schema's required fields always come first (null when unknown); the rest only when
        set."""
        body = {k: v.to_dict() if isinstance(v, Wire) else v for k, v in self.to_dict().items()}
        head = {key: body.pop(key, None) for key in _ALWAYS_SHOWN}
        return {**head, **body}


#: Wire fields always shown, first, even when null: what a ticket may always read.
_ALWAYS_SHOWN: Final = (
    "requestId",
    "phase",
    "terminal",
    "acceptedAt",
    "updatedAt",
    "deadline",
    "daysLeft",
    "deadlineWarning",
    "overdue",
)


#: The recorded fields the document shows as they were recorded.
_COPIED: Final = tuple(item.name for item in dataclasses.fields(ShownAsRecorded))


def status_document(
    request_id: str,
    runtime_status: str | None,
    custom_status: object,
    output: object,
    created_at: datetime | None = None,
    last_updated_at: datetime | None = None,
    *,
    now: datetime | None = None,
    legal: RecordedStatus | None = None,
) -> StatusDocument:
    """Merge Durable's view of one instance into the DSR status document.

    Days left, warning and overdue are computed against ``now`` (the caller's clock), so they
    are right at read time however long ago the orchestrator last wrote its status. ``legal``
    (the job's deadline, :meth:`ExportJob.deadline_record`, or all its legal facts for an
    attempt just started, :meth:`ExportJob.legal_record`) stands in for what the orchestrator
    has not recorded yet.
    """
    recorded = (RecordedStatus.read(custom_status), RecordedStatus.read(output))
    sources = [source for source in (legal, *recorded) if source is not None]
    shown = _recorded_fields(sources)
    phase = next(
        (str(source.phase) for source in reversed(recorded) if source and source.phase),
        Phase.ACCEPTED.value,
    )
    error = shown.get("error")
    if isinstance(error, Mapping) and error.get("code") == "Cancelled":
        shown["error"] = dict(cancelled(error))  # a code and a hash, never the words
    match runtime_status:
        case "Terminated":
            phase = Phase.CANCELLED.value
        case "Failed":
            # The orchestrator catches its own failures; this is a crash of the code itself.
            phase = Phase.FAILED.value
            shown.setdefault("error", {"code": "OrchestrationFailed", "message": "internal error"})
    return StatusDocument(
        request_id=request_id,
        phase=phase,
        terminal=phase in TERMINAL_PHASES,
        accepted_at=_iso(created_at),
        updated_at=_iso(last_updated_at),
        **_deadline_fields(phase, sources, now),
        **shown,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _recorded_fields(sources: list[RecordedStatus]) -> dict[str, Any]:
    """The recorded fields the document shows, the later source's where several record one."""
    shown: dict[str, Any] = {}
    for source in sources:
        recorded = {name: getattr(source, name) for name in _COPIED}
        shown.update({name: value for name, value in recorded.items() if value is not None})
    return shown


def _deadline_fields(
    phase: str, sources: list[RecordedStatus], now: datetime | None
) -> dict[str, Any]:
    """The deadline as seen at ``now``: the last source that records one gives it and its
    warning moment together."""
    due = warn = None
    for source in sources:
        if source.deadline:
            due, warn = source.deadline, source.warning_at
    if due is None:
        return {}
    try:
        due_at = datetime.fromisoformat(str(due))
        warn_at = datetime.fromisoformat(str(warn)) if warn else None
    except ValueError:
        return {}
    if now is None or phase in OBLIGATION_CLOSED:
        return {"deadline": due_at.isoformat()}
    seen = view(due_at, warn_at, now)
    return {
        "deadline": seen.deadline.isoformat(),
        "days_left": seen.days_left,
        "deadline_warning": seen.warning,
        "overdue": seen.overdue,
    }
