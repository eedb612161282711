"""The DSR status document: what the ticket and the operator see.

Built from what Durable keeps (runtime status, custom status, output), never from the
orchestration input, and never with Durable's management URLs (they embed the system key).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any


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
)


def status_document(
    request_id: str,
    runtime_status: str | None,
    custom_status: object,
    output: object,
    created_at: datetime | None = None,
    last_updated_at: datetime | None = None,
) -> dict[str, Any]:
    """Merge Durable's view of one instance into the DSR status document."""
    doc: dict[str, Any] = {"requestId": request_id, "phase": Phase.ACCEPTED.value}
    for source in (custom_status, output):
        if isinstance(source, Mapping):
            if "phase" in source:
                doc["phase"] = str(source["phase"])
            doc.update({key: source[key] for key in _COPIED if key in source})
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
    return doc
