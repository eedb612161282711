"""The DSR status document: what the ticket and the operator see.

Built from what Durable keeps (runtime status, custom status, output), never from the
orchestration input, and never with Durable's management URLs (they embed the system key).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dsr_export.domain.deadlines import view
from dsr_export.domain.errors import cancelled


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

#: Fields of the custom status / output copied into the status document as they are.
_COPIED = (
    "graphStatus",
    "progress",
    "operationId",
    "container",
    "submittedAt",
    "completedAt",
    "nextCheckAt",
    "pollRound",
    "manifest",
    "error",
    "sas",
    "receivedAt",
    "regulation",
    "callbacks",
    "submittedBy",
    "originalDeadline",
    "extensions",
    "refusedExtensions",
    "attempt",
    "attempts",
)


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
            doc.update({key: source[key] for key in _COPIED if key in source})
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
