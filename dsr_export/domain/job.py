"""The state of one DSR export as the orchestration carries it, and what it shows of itself.

It is the orchestration input and travels through ``continue_as_new``, so it holds only
non-secret facts. Persisted in the task hub: no SAS, no token, ever. The projections below
(status body, legal body, callback data, result) are the only places that decide
which of its facts each document shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dsr_export.domain.deadlines import parse_regulation, view
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused, extended, whole_days
from dsr_export.domain.request import container_name
from dsr_export.domain.status import Phase, RecordedStatus

# The event names live in the step contract; re-exported for the orchestrator's imports.
from dsr_export.domain.steps import CANCEL_EVENT as CANCEL_EVENT
from dsr_export.domain.steps import EXTEND_EVENT as EXTEND_EVENT


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
    #: Where the tenant's gate counts this export in flight (the lapse bucket of
    #: :func:`dsr_export.domain.gate.pace`): given back at the next check-in or on leaving, so
    #: the gate moves the count instead of adding a second one.
    pace_until: str | None = None
    #: Which submit this is (a fresh container each); a submit Graph never posted is retried.
    submit_attempt: int = 1
    #: Submits of this attempt that the export storage's outage spoilt (each then waited and
    #: went to a fresh container); bounded apart from the submits Graph never posted.
    storage_resubmits: int = 0
    #: Throttled or failed tries of the current Graph step so far (the back-off's exponent).
    throttle_round: int = 0
    graph_status: str | None = None
    progress: float | None = None
    # The legal side, set by the starter (the orchestrator reads no settings and no clock).
    received_at: str | None = None
    regulation: str | dict[str, int] | None = None
    legal_deadline: str | None = None
    warning_at: str | None = None
    callback_url: str | None = None
    requested_by: str | None = None
    #: The subject's package's language as the request named it (None: ``PACKAGE_LANGUAGE``).
    language: str | None = None
    #: The authenticated caller that submitted the DSR (kind and pseudonymous id).
    submitted_by: dict[str, str] | None = None
    # What has been told already, so a replay or a new episode never tells it twice.
    warned: bool = False
    overdue_noted: bool = False
    failed_callbacks: tuple[str, ...] = ()
    # After the export: the deadline's extensions and the DSR's earlier attempts.
    #: The deadline before any extension (None: never extended).
    original_deadline: str | None = None
    #: Each extension applied: askId, previousDeadline, deadline, days, reasonCode, extendedAt.
    extensions: tuple[dict[str, Any], ...] = ()
    #: The asks refused when their turn came (past the cap once earlier asks were applied).
    refused_extensions: tuple[str, ...] = ()
    #: The evidence record of the last extension ask read: the next read starts after it.
    ask_cursor: int = -1
    #: When the poll that an applied extension interrupted was due (a fresh execution waits
    #: until then, not a whole interval more).
    next_check_at: str | None = None
    #: Which attempt of the DSR this is: a failed DSR retried runs again under the same id.
    attempt: int = 1
    #: The attempts before this one: attempt, phase, errorCode, container, endedAt.
    earlier_attempts: tuple[dict[str, Any], ...] = ()
    #: Submits (containers) the earlier attempts used: this attempt's containers come after.
    submit_base: int = 0
    #: The Entra tenant the DSR belongs to (``TENANCY=multi``): whose Graph, quota (its submit
    #: gate), storage and evidence it uses. None: the app's own tenant (``single``); an input
    #: written before tenants existed reads back as None, as it always ran.
    tenant_id: str | None = None
    #: The tenant's ``quotaBudget`` as the registry held it at intake (``submitsPerDay``,
    #: ``pollsPerHour``): the share of Graph's quotas its gate admits and its polls pace
    #: within. None: the documented quotas (``single``, or an input written before budgets).
    quota_budget: dict[str, int] | None = None

    def replace(self, **changes: Any) -> ExportJob:
        """A copy with ``changes`` applied (the job is immutable)."""
        return dataclasses.replace(self, **changes)

    def budget(self, name: str) -> int | None:
        """One field of the tenant's quota budget (``submitsPerDay``, ``pollsPerHour``), or
        None for the documented quota."""
        value = (self.quota_budget or {}).get(name)
        return value if isinstance(value, int) and value > 0 else None

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

    # -- after the export ---------------------------------------------------------------------
    def handled_asks(self) -> frozenset[str]:
        """The ask ids already applied or refused: an ask is judged once, whatever repeats it."""
        applied = {str(e["askId"]) for e in self.extensions if e.get("askId")}
        return frozenset(applied | set(self.refused_extensions))

    def extended_by(
        self,
        ask: ExtensionAsk,
        now: datetime,
        *,
        custom_max_days: int,
        ask_id: str | None = None,
    ) -> ExportJob:
        """The job with its deadline extended as ``ask`` says, the warning moved by as much and
        the warning and overdue notices re-armed for the new moments still ahead.

        Raises :class:`~dsr_export.domain.extensions.ExtensionRefused` beyond the regulation's
        cap, or when the DSR has no legal deadline.
        """
        current, received = self.legal_deadline_at(), self.received_at
        if current is None or received is None:
            raise ExtensionRefused("/days", "this DSR has no legal deadline to extend")
        original = (
            datetime.fromisoformat(self.original_deadline) if self.original_deadline else current
        )
        new = extended(
            ask,
            regulation=parse_regulation(self.regulation),
            received_at=datetime.fromisoformat(received),
            original=original,
            current=current,
            earlier=self.extensions,
            custom_max_days=custom_max_days,
        )
        warn_at = self.warning_due_at()
        new_warning = new - (current - warn_at) if warn_at is not None else None
        record = {
            **({"askId": ask_id} if ask_id else {}),
            "previousDeadline": current.isoformat(),
            "deadline": new.isoformat(),
            "days": whole_days(current, new),
            "reasonCode": ask.reason_code,
            "extendedAt": now.isoformat(),
        }
        return self.replace(
            original_deadline=self.original_deadline or self.legal_deadline,
            legal_deadline=new.isoformat(),
            warning_at=new_warning.isoformat() if new_warning is not None else None,
            # A notice already sent for a moment that has moved ahead is owed again.
            warned=self.warned and (new_warning is None or now >= new_warning),
            overdue_noted=self.overdue_noted and now >= new,
            extensions=(*self.extensions, record),
        )

    def next_attempt(self, ended: Mapping[str, Any]) -> ExportJob:
        """The job that runs this DSR again after the attempt whose result is ``ended``.

        Same request, tenant and quota budget, user, legal deadline (extensions included) and
        ticket; a fresh container (the old one holds Graph's receipt); the ended attempt joins
        the earlier ones. Unless Graph still has the export the ended attempt followed
        (:func:`_resumable`): then the new attempt takes that container again and resumes the
        known operation by its receipt (``recover_submit``), never submitting a second export.
        """
        last = RecordedStatus.read(ended) or RecordedStatus()
        used = last.submit_attempt
        submits = (
            used if isinstance(used, int) and used >= self.submit_attempt else self.submit_attempt
        )
        resume = _resumable(last, container_name(self.request_id, submits))
        error = last.error if isinstance(last.error, Mapping) else {}
        attempt = int(last.attempt or self.attempt)
        earlier = {
            "attempt": attempt,
            "phase": last.phase,
            "errorCode": error.get("code"),
            "container": last.container,
            "endedAt": last.completed_at,
        }
        return ExportJob(
            request_id=self.request_id,
            user=self.user,
            user_id=self.user_id,
            policy=self.policy,
            received_at=self.received_at,
            regulation=self.regulation,
            legal_deadline=last.deadline or self.legal_deadline,
            warning_at=last.warning_at or self.warning_at,
            original_deadline=last.original_deadline or self.original_deadline,
            extensions=tuple(last.extensions or self.extensions),
            refused_extensions=tuple(last.refused_extensions or self.refused_extensions),
            callback_url=self.callback_url,
            requested_by=self.requested_by,
            language=self.language,
            submitted_by=self.submitted_by,
            tenant_id=self.tenant_id,
            quota_budget=self.quota_budget,
            attempt=attempt + 1,
            earlier_attempts=(
                *tuple(last.attempts or self.earlier_attempts),
                {key: value for key, value in earlier.items() if value is not None},
            ),
            submit_attempt=submits if resume else submits + 1,
            submit_base=submits - 1 if resume else submits,
        )

    # -- the documents ------------------------------------------------------------------------
    def recorded(self, phase: Phase, **extra: Any) -> RecordedStatus:
        """What the orchestrator records of the DSR in ``phase`` (``extra``: further recorded
        fields by their wire names, e.g. ``nextCheckAt``)."""
        extensions = [dict(extension) for extension in self.extensions] or None
        retried = self.attempt > 1 or bool(self.earlier_attempts)
        recorded = RecordedStatus(
            request_id=self.request_id,
            tenant_id=self.tenant_id,
            phase=phase.value,
            container=self.container,
            operation_id=self.operation_id,
            submitted_at=self.submitted_at,
            graph_status=self.graph_status,
            progress=self.progress,
            poll_round=self.poll_round,
            received_at=self.received_at,
            regulation=self.regulation,
            deadline=self.legal_deadline,
            warning_at=self.warning_at,
            submitted_by=self.submitted_by,
            original_deadline=self.original_deadline,
            extensions=extensions,
            refused_extensions=list(self.refused_extensions) or None,
            attempt=self.attempt if retried else None,
            attempts=[dict(earlier) for earlier in self.earlier_attempts] if retried else None,
            callbacks={"failed": list(self.failed_callbacks)} if self.failed_callbacks else None,
        )
        return RecordedStatus.from_dict({**recorded.to_dict(), **extra}) if extra else recorded

    def deadline_record(self) -> RecordedStatus:
        """The legal deadline and its warning moment alone: what a DSR that has not written
        its status yet lends its document (no more, so that a client can tell a DSR just
        accepted from one already under way, as ``dsrctl import`` does)."""
        return RecordedStatus(
            deadline=self.legal_deadline, warning_at=self.warning_at, tenant_id=self.tenant_id
        )

    def legal_record(self) -> RecordedStatus:
        """The legal facts every document repeats, the attempts, and the callbacks that
        failed: what stands in for a status the orchestrator has not written yet."""
        recorded = self.recorded(Phase.ACCEPTED)
        return RecordedStatus(**{name: getattr(recorded, name) for name in _LEGAL})

    def status_body(self, phase: Phase, **extra: Any) -> dict[str, Any]:
        """The custom status: what the status document is built from while the DSR runs."""
        return self.recorded(phase, **extra).to_dict()

    def event_data(self, phase: Phase, now: datetime) -> dict[str, Any]:
        """The data of a callback event (the event builder keeps only its own fields)."""
        data: dict[str, Any] = {
            "requestId": self.request_id,
            "tenantId": self.tenant_id,
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

    def result(
        self,
        ending: Ending,
        completed_at: datetime,
        *,
        manifest: dict[str, Any] | None = None,
        sas: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The orchestration's output: the terminal status the ticket and the list read."""
        recorded = self.recorded(
            ending.phase,
            error=ending.error,
            manifest=manifest,
            sas=sas,
            completedAt=completed_at.isoformat(),
            submitAttempt=self.submit_attempt,
        )
        return dataclasses.replace(recorded, poll_round=None).to_dict()  # a running DSR's

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
        for name in ("failed_callbacks", "extensions", "earlier_attempts", "refused_extensions"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)


def _resumable(last: RecordedStatus, last_container: str) -> bool:
    """Whether a retry resumes the export the ended attempt followed rather than submit anew:
    the attempt failed (not timed out: Graph did not finish in the DSR's time) while Graph had
    its export in that attempt's last container, and Graph had not reported the export failed
    (a storage outage, a finalisation or a check that failed ended it, not Graph's export).

    Also after a storage outage that outlasted the submit's own record (``StorageUnavailable``
    without an operation): Graph may have the export; the container tells (its receipt is
    recovered, or, absent, the submit goes into that same, empty container).
    """
    error = last.error if isinstance(last.error, Mapping) else {}
    outage = error.get("code") == "StorageUnavailable"
    return (
        last.phase == Phase.FAILED.value
        and (bool(last.operation_id) or outage)
        and last.container == last_container
        and last.graph_status != "failed"
    )


#: The legal facts of :meth:`ExportJob.legal_record`.
_LEGAL = (
    "tenant_id",
    "received_at",
    "regulation",
    "deadline",
    "warning_at",
    "submitted_by",
    "original_deadline",
    "extensions",
    "refused_extensions",
    "attempt",
    "attempts",
    "callbacks",
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
