"""The state of one DSR export as the orchestration carries it.

It is the orchestration input and travels through ``continue_as_new``, so it holds only
non-secret facts. Persisted in the task hub: no SAS, no token, ever.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dsr_export.settings import ExportPolicy

#: Name of the external event that cancels a DSR.
CANCEL_EVENT = "cancel"


@dataclass(frozen=True)
class ExportJob:
    """Everything the orchestrator knows about one DSR between two episodes."""

    request_id: str
    user: str
    user_id: str | None = None
    policy: ExportPolicy = field(default_factory=ExportPolicy)
    started_at: str | None = None
    container: str | None = None
    operation_id: str | None = None
    operation_url: str | None = None
    submitted_at: str | None = None
    sas_expires_at: str | None = None
    poll_round: int = 0
    wait_seconds: int = 60
    graph_status: str | None = None
    progress: float | None = None
    # The legal side, set by the starter (the orchestrator reads no settings and no clock).
    received_at: str | None = None
    regulation: str | dict[str, int] | None = None
    legal_deadline: str | None = None
    warning_at: str | None = None
    callback_url: str | None = None
    requested_by: str | None = None
    # What has been told already, so a replay or a new episode never tells it twice.
    warned: bool = False
    overdue_noted: bool = False
    failed_callbacks: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> ExportJob:
        """A copy with ``changes`` applied (the job is immutable)."""
        return dataclasses.replace(self, **changes)

    def deadline(self) -> datetime:
        """When the DSR gives up waiting for Graph (``EXPORT_TIMEOUT_DAYS`` after start)."""
        assert self.started_at is not None
        return datetime.fromisoformat(self.started_at) + timedelta(days=self.policy.timeout_days)

    def legal_deadline_at(self) -> datetime | None:
        """The legal response deadline (UTC), when the starter computed one."""
        return datetime.fromisoformat(self.legal_deadline) if self.legal_deadline else None

    def warning_due_at(self) -> datetime | None:
        """When the deadline warning is due, when the starter computed one."""
        return datetime.fromisoformat(self.warning_at) if self.warning_at else None

    def to_input(self) -> dict[str, Any]:
        """The JSON form: orchestration input and ``continue_as_new`` payload."""
        data = dataclasses.asdict(self)
        data["policy"] = dataclasses.asdict(self.policy)
        return {_camel(key): value for key, value in data.items() if value is not None}

    @classmethod
    def from_input(cls, raw: object) -> ExportJob:
        """Read the orchestration input back."""
        if not isinstance(raw, dict):
            raise TypeError("orchestration input must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        data = {_snake(key): value for key, value in raw.items()}
        data = {key: value for key, value in data.items() if key in names}
        data["policy"] = ExportPolicy(**{_snake(k): v for k, v in data.get("policy", {}).items()})
        data["failed_callbacks"] = tuple(data.get("failed_callbacks", ()))
        return cls(**data)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def next_wait(previous: int, *, cap: int, retry_after: int | None = None) -> int:
    """Seconds until the next poll: double the last wait up to ``cap``.

    A Retry-After from Graph is always honoured as the minimum, even above the cap: the service
    asked for it.
    """
    wait = min(cap, max(previous * 2, 1))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return wait
