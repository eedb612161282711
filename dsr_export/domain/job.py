"""The state of one DSR export as the orchestration carries it, and what it shows of itself.

It is the orchestration input and travels through ``continue_as_new``, so it holds only
non-secret facts. Persisted in the task hub: no SAS, no token, ever. The projections below
(status body, legal body, callback data, audit record, result) are the only places that decide
which of its facts each document shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dsr_export.domain.deadlines import view
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.status import Phase

#: Name of the external event that cancels a DSR.
CANCEL_EVENT = "cancel"


@dataclass(frozen=True)
class ExportPolicy:
    """Orchestration knobs. Read from settings by the starter; carried in the orchestration
    input (an orchestrator may not read the environment)."""

    max_poll_interval_seconds: int = 3600
    rounds_per_history: int = 20
    timeout_days: int = 45


@dataclass(frozen=True)
class Ending:
    """How a DSR ends: its terminal phase and, unless it completed, why."""

    phase: Phase
    error: ErrorDoc | None = None


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
    #: Which submit this is (a fresh container each); a submit Graph never posted is retried.
    submit_attempt: int = 1
    #: Throttled or failed tries of the current Graph step so far (the back-off's exponent).
    throttle_round: int = 0
    #: The operation was found from Graph's receipt after the submit's answer was lost.
    submit_recovered: bool = False
    graph_status: str | None = None
    progress: float | None = None
    # The legal side, set by the starter (the orchestrator reads no settings and no clock).
    received_at: str | None = None
    regulation: str | dict[str, int] | None = None
    legal_deadline: str | None = None
    warning_at: str | None = None
    callback_url: str | None = None
    requested_by: str | None = None
    #: The authenticated caller that submitted the DSR (kind and pseudonymous id).
    submitted_by: dict[str, str] | None = None
    # What has been told already, so a replay or a new episode never tells it twice.
    warned: bool = False
    overdue_noted: bool = False
    failed_callbacks: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> ExportJob:
        """A copy with ``changes`` applied (the job is immutable)."""
        return dataclasses.replace(self, **changes)

    # -- the clocks ---------------------------------------------------------------------------
    def give_up_at(self) -> datetime:
        """When the DSR stops waiting for Graph (``EXPORT_TIMEOUT_DAYS`` after it started).

        Not the legal deadline (:meth:`legal_deadline_at`): an export may run past that.
        """
        assert self.started_at is not None
        return datetime.fromisoformat(self.started_at) + timedelta(days=self.policy.timeout_days)

    def legal_deadline_at(self) -> datetime | None:
        """The legal response deadline (UTC), when the starter computed one."""
        return datetime.fromisoformat(self.legal_deadline) if self.legal_deadline else None

    def warning_due_at(self) -> datetime | None:
        """When the deadline warning is due, when the starter computed one."""
        return datetime.fromisoformat(self.warning_at) if self.warning_at else None

    def next_legal_moment(self, now: datetime) -> datetime | None:
        """The next warning or overdue moment still ahead, so a poll wakes up for it."""
        moments = []
        warn_at, due = self.warning_due_at(), self.legal_deadline_at()
        if warn_at is not None and not self.warned:
            moments.append(warn_at)
        if due is not None and not self.overdue_noted:
            moments.append(due)
        ahead = [moment for moment in moments if moment > now]
        return min(ahead) if ahead else None

    # -- the documents ------------------------------------------------------------------------
    def legal_body(self) -> dict[str, Any]:
        """The legal facts every document repeats, and the callbacks that failed."""
        body: dict[str, Any] = {
            "receivedAt": self.received_at,
            "regulation": self.regulation,
            "deadline": self.legal_deadline,
            "warningAt": self.warning_at,
            "submittedBy": self.submitted_by,
        }
        if self.failed_callbacks:
            body["callbacks"] = {"failed": list(self.failed_callbacks)}
        return body

    def status_body(self, phase: Phase, **extra: Any) -> dict[str, Any]:
        """The custom status: what the status document is built from while the DSR runs."""
        body = {
            "phase": phase.value,
            "requestId": self.request_id,
            "container": self.container,
            "operationId": self.operation_id,
            "submittedAt": self.submitted_at,
            "graphStatus": self.graph_status,
            "progress": self.progress,
            "pollRound": self.poll_round,
            **self.legal_body(),
            **extra,
        }
        return {key: value for key, value in body.items() if value is not None}

    def event_data(self, phase: Phase, now: datetime) -> dict[str, Any]:
        """The data of a callback event (the event builder keeps only its own fields)."""
        data: dict[str, Any] = {
            "requestId": self.request_id,
            "phase": phase.value,
            "operationId": self.operation_id,
            "graphStatus": self.graph_status,
            "progress": self.progress,
            "submittedAt": self.submitted_at,
        }
        due = self.legal_deadline_at()
        if due is not None:
            data.update(view(due, self.warning_due_at(), now).to_dict())
        return data

    def audit_record(self, ending: Ending, finished_at: datetime) -> dict[str, Any]:
        """What the privacy team keeps as evidence: the ticket, the legal clock, the timeline
        and the outcome (finalisation adds the manifest summary and the SAS revocation)."""
        error = ending.error
        return {
            "requestId": self.request_id,
            "outcome": ending.phase.value,
            "regulation": self.regulation,
            "receivedAt": self.received_at,
            "deadline": self.legal_deadline,
            "requestedBy": self.requested_by,
            "submittedBy": self.submitted_by,
            "acceptedAt": self.started_at,
            "submittedAt": self.submitted_at,
            "operationId": self.operation_id,
            "submitRecovered": self.submit_recovered or None,
            "submitAttempt": self.submit_attempt if self.submit_attempt > 1 else None,
            "finishedAt": finished_at.isoformat(),
            "error": {"code": error.get("code"), "category": error.get("category")}
            if error
            else None,
        }

    def result(
        self,
        ending: Ending,
        completed_at: datetime,
        *,
        manifest: dict[str, Any] | None = None,
        sas: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The orchestration's output: the terminal status the ticket and the list read."""
        result: dict[str, Any] = {
            "requestId": self.request_id,
            "phase": ending.phase.value,
            "operationId": self.operation_id,
            "container": self.container,
            "submittedAt": self.submitted_at,
            "graphStatus": self.graph_status,
            "progress": self.progress,
            "error": ending.error,
            "manifest": manifest,
            "sas": sas,
            "completedAt": completed_at.isoformat(),
            **self.legal_body(),
        }
        return {key: value for key, value in result.items() if value is not None}

    # -- the wire form ------------------------------------------------------------------------
    def to_input(self) -> dict[str, Any]:
        """The JSON form: orchestration input and ``continue_as_new`` payload."""
        data = dataclasses.asdict(self)
        data["policy"] = dataclasses.asdict(self.policy)
        return {_camel(key): value for key, value in data.items() if value is not None}

    @classmethod
    def from_input(cls, raw: object) -> ExportJob:
        """Read the orchestration input back (the only reader of that shape)."""
        if not isinstance(raw, dict):
            raise TypeError("orchestration input must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        data = {_snake(key): value for key, value in raw.items()}
        data = {key: value for key, value in data.items() if key in names}
        knobs = {f.name for f in dataclasses.fields(ExportPolicy)}
        policy = {_snake(k): v for k, v in (data.get("policy") or {}).items()}
        data["policy"] = ExportPolicy(**{k: v for k, v in policy.items() if k in knobs})
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
