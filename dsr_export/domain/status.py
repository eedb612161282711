"""The DSR status document: what the ticket and the operator see.

Built from what Durable keeps (runtime status, custom status, output), never from the
orchestration input, and never with Durable's management URLs (they embed the system key).
"""

from __future__ import annotations

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
class Recorded(Wire):
    """What the orchestrator records of a DSR: its custom status while it runs, its output at
    the end. The stored part of the status document, its fields and their camelCase wire names
    defined here once: the job writes it (:meth:`ExportJob.recorded`), :func:`status_document`
    reads it, and after a purge the evidence fills it (``lifecycle.purged_status``)."""

    _omit_none: ClassVar[bool] = True

    request_id: str | None = None
    phase: str | None = None
    container: str | None = None
    operation_id: str | None = None
    submitted_at: str | None = None
    graph_status: str | None = None
    progress: Any = None
    poll_round: int | None = None
    next_check_at: str | None = None
    received_at: str | None = None
    regulation: Any = None
    deadline: str | None = None
    warning_at: str | None = None
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
    #: Which containers this DSR has used: a retry continues after them (never shown).
    submit_attempt: int | None = None

    def shown(self) -> dict[str, Any]:
        """The fields the status document shows as they were recorded (the phase and the
        deadline it derives; the request id and the submit attempt it does not show)."""
        return {k: v for k, v in self.to_dict().items() if k not in _DERIVED}


#: Recorded fields the status document does not copy as they are.
_DERIVED: Final = frozenset({"requestId", "phase", "deadline", "warningAt", "submitAttempt"})


def status_document(
    request_id: str,
    runtime_status: str | None,
    custom_status: object,
    output: object,
    created_at: datetime | None = None,
    last_updated_at: datetime | None = None,
    *,
    now: datetime | None = None,
    legal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge Durable's view of one instance into the DSR status document.

    Days left, warning and overdue are computed against ``now`` (the caller's clock), so they
    are right at read time however long ago the orchestrator last wrote its status. ``legal``
    (``deadline``, ``warningAt``) stands in while the orchestrator has not written any status
    yet (a DSR still pending).
    """
    doc: dict[str, Any] = {"requestId": request_id, "phase": Phase.ACCEPTED.value}
    for source in (custom_status, output):
        if isinstance(source, Mapping):
            if "phase" in source:
                doc["phase"] = str(source["phase"])
            doc.update(Recorded.from_dict(dict(source)).shown())
    if isinstance(doc.get("error"), Mapping) and doc["error"].get("code") == "Cancelled":
        doc["error"] = dict(cancelled(doc["error"]))  # a code and a hash, never the words
    match runtime_status:
        case "Terminated":
            doc["phase"] = Phase.CANCELLED.value
        case "Failed":
            # The orchestrator catches its own failures; this is a crash of the code itself.
            doc["phase"] = Phase.FAILED.value
            doc.setdefault("error", {"code": "OrchestrationFailed", "message": "internal error"})
    doc["acceptedAt"] = created_at.isoformat() if created_at else None
    doc["updatedAt"] = last_updated_at.isoformat() if last_updated_at else None
    doc["terminal"] = doc["phase"] in TERMINAL_PHASES
    doc.update(_deadline_fields(doc["phase"], custom_status, output, legal, now))
    return doc


def _deadline_fields(
    phase: str, custom_status: object, output: object, legal: object, now: datetime | None
) -> dict[str, Any]:
    due = warn = None
    for source in (legal, custom_status, output):
        if isinstance(source, Mapping) and source.get("deadline"):
            due, warn = source["deadline"], source.get("warningAt")
    if due is None:
        return {"deadline": None, "daysLeft": None, "deadlineWarning": False, "overdue": False}
    try:
        due_at = datetime.fromisoformat(str(due))
        warn_at = datetime.fromisoformat(str(warn)) if warn else None
    except ValueError:
        return {"deadline": None, "daysLeft": None, "deadlineWarning": False, "overdue": False}
    if now is None or phase in OBLIGATION_CLOSED:
        return {
            "deadline": due_at.isoformat(),
            "daysLeft": None,
            "deadlineWarning": False,
            "overdue": False,
        }
    return view(due_at, warn_at, now).to_dict()
