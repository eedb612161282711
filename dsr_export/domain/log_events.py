"""The one declared list of the app's structured log events and the fields each may carry.

Why a list: the operators' workbook, the scheduled alert rules and the queries in
docs/operations.md read these lines in Application Insights, and a query over a misspelled or
renamed event does not fail, it just shows nothing. So every event the app logs is declared
here, :func:`dsr_export.domain.logs.log_event` refuses one that is not (or a field the event
does not declare), and the tests check every query against this list (tests/ops,
tests/infra/test_workbook.py, tests/infra/test_alerts.py).

``request_scoped`` events always concern one DSR, and must carry its ``request_id`` (the
ticket's id, which is also the orchestration's instance id): it is what ties a line to the DSR
in the per-DSR query. The others may lack one (a refused call, a message that is not a
request, the retention sweep as a whole).

Pure data: no I/O, importable by the orchestrator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

#: Fields the orchestrator's ``_log`` adds to every one of its lines.
ORCHESTRATOR_FIELDS: Final = ("request_id", "instance_id", "deadline")
#: Who acted: the authenticated caller of the HTTP API (never a UPN or an e-mail address).
CALLER_FIELDS: Final = ("caller_kind", "caller_id")


@dataclass(frozen=True)
class LogEvent:
    """One declared event: its name, the fields it may carry, whether it names one DSR."""

    name: str
    fields: tuple[str, ...]
    request_scoped: bool = True

    def __post_init__(self) -> None:
        if self.request_scoped and "request_id" not in self.fields:
            raise ValueError(f"{self.name}: a request-scoped event must declare request_id")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"{self.name}: a field is declared twice")


def _events(*declared: LogEvent) -> Mapping[str, LogEvent]:
    table = {event.name: event for event in declared}
    if len(table) != len(declared):
        raise ValueError("an event is declared twice")
    return MappingProxyType(table)


EVENTS: Final[Mapping[str, LogEvent]] = _events(
    # --- intake (HTTP and queue)
    LogEvent(
        "dsr_accepted",
        ("request_id", "phase", "source", *CALLER_FIELDS, "deadline", "warning_at"),
    ),
    LogEvent("dsr_duplicate", ("request_id", "source")),
    LogEvent("dsr_id_in_use", ("request_id", "source", *CALLER_FIELDS)),
    LogEvent("received_corrected", ("request_id", "superseded_seq")),
    LogEvent("received_correction_failed", ("request_id", "reason")),
    LogEvent("dsr_cancel_requested", ("request_id", "phase", *CALLER_FIELDS)),
    LogEvent(
        "access_denied", ("request_id", "reason", "role", *CALLER_FIELDS), request_scoped=False
    ),
    LogEvent("intake_unavailable", ("request_id", "reason", "code"), request_scoped=False),
    LogEvent("intake_misconfigured", ("request_id", "setting"), request_scoped=False),
    LogEvent("signing_keys_fetched", ("keys", "reason"), request_scoped=False),
    LogEvent("signing_keys_unavailable", ("reason",), request_scoped=False),
    LogEvent(
        "dsr_request_rejected",
        ("request_id", "message_id", "reason", "fields", "recorded_in"),
        request_scoped=False,
    ),
    LogEvent(
        "dsr_request_poisoned",
        ("request_id", "message_id", "dequeue_count", "queue", "reason"),
        request_scoped=False,
    ),
    # --- activities
    LogEvent("setup_error", ("request_id", "step", "code", "setting"), request_scoped=False),
    LogEvent("user_resolved", ("request_id", "phase")),
    LogEvent("container_prepared", ("request_id", "phase", "container", "request_info_exists")),
    LogEvent("sas_lifetime_limited", ("request_id", "phase", "sas_expires_at", "consequence")),
    LogEvent("export_submitted", ("request_id", "phase", "operation_id")),
    LogEvent("submit_not_posted", ("request_id", "phase", "container", "final")),
    LogEvent("submit_receipt_unreadable", ("request_id", "phase", "container", "final")),
    # Logged by the activity (phase, container) and by the orchestrator (instance_id, deadline).
    LogEvent(
        "submit_recovered",
        ("request_id", "phase", "operation_id", "container", "instance_id", "deadline"),
    ),
    LogEvent("export_checked", ("request_id", "phase", "graph_status", "progress")),
    LogEvent("export_finalized", ("request_id", "phase", "sas_revoked", "blobs")),
    LogEvent(
        "graph_error",
        ("request_id", "step", "status", "code", "graph_request_id", "client_request_id"),
    ),
    LogEvent("callback_sent", ("request_id", "event_type", "message_id", "status", "reason")),
    LogEvent("callback_refused", ("request_id", "event_type", "message_id", "status", "reason")),
    LogEvent("callback_attempt_failed", ("request_id", "event_type", "message_id", "reason")),
    LogEvent("evidence_recorded", ("request_id", "kind", "seq")),
    # The storage SDK waits to try a call again (no answer, or 5xx): which account, for what.
    LogEvent(
        "storage_retry",
        ("request_id", "step", "account", "reason", "attempt", "retry_in_seconds"),
        request_scoped=False,
    ),
    # Storage (export or evidence account) did not answer an activity: what it waits for.
    LogEvent(
        "storage_unavailable",
        ("request_id", "step", "reason", "waiting_for", "graph_code", "graph_request_id"),
    ),
    LogEvent("evidence_unreadable", ("request_id", "reason")),
    # --- the tenant's submit gate (orchestrations/submit_gate.py): ids and counts only
    LogEvent(
        "submit_slot_granted", ("request_id", "tenant", "queued", "in_window", "next_slot_at")
    ),
    LogEvent(
        "submit_gate_behind",
        ("request_id", "tenant", "queued", "position", "slot_at", "deadline"),
    ),
    LogEvent("submit_quota_spent", ("request_id", "tenant", "blocked_until", "in_window")),
    # --- orchestrator (through _log: request_id, instance_id, deadline on every line)
    LogEvent("submit_restarted", ORCHESTRATOR_FIELDS),
    # Waiting for the slot the tenant's submit gate named (a lifecycle line: not stalled).
    LogEvent("submit_queued", (*ORCHESTRATOR_FIELDS, "slot_at", "position", "queued")),
    LogEvent("submit_waits_for_storage", (*ORCHESTRATOR_FIELDS, "resubmit", "wait_seconds")),
    LogEvent(
        "step_waits_for_storage", (*ORCHESTRATOR_FIELDS, "step", "outage_wait", "wait_seconds")
    ),
    LogEvent("dsr_finished", (*ORCHESTRATOR_FIELDS, "phase", "code")),
    LogEvent("deadline_warning", ORCHESTRATOR_FIELDS),
    LogEvent("deadline_overdue", ORCHESTRATOR_FIELDS),
    LogEvent(
        "deadline_extended",
        (*ORCHESTRATOR_FIELDS, "ask_id", "previous_deadline", "extension_days"),
    ),
    LogEvent("extension_refused", (*ORCHESTRATOR_FIELDS, "ask_id")),
    LogEvent("extensions_unread", ORCHESTRATOR_FIELDS),
    LogEvent("callback_failed", (*ORCHESTRATOR_FIELDS, "event_type")),
    # --- lifecycle after the export: delivery, extension, retry, erasure, retention
    LogEvent("dsr_delivered", ("request_id", *CALLER_FIELDS, "expires_at")),
    # A ticket callback handed to the DSR's orchestration by the API (delivery, extension...).
    LogEvent("callback_queued", ("request_id", "event_type")),
    LogEvent("callback_queue_failed", ("request_id", "event_type", "reason")),
    # The API's line: an extension asked (and recorded); deadline_extended says it applied.
    LogEvent(
        "dsr_extended",
        (
            "request_id",
            "ask_id",
            "previous_deadline",
            "extension_days",
            "extension_months",
            "reason_code",
            *CALLER_FIELDS,
        ),
    ),
    LogEvent(
        "dsr_retried",
        ("request_id", "attempt", "previous_phase", "previous_code", *CALLER_FIELDS),
    ),
    LogEvent(
        "dsr_erased",
        ("request_id", "receipt_id", "blob_count", "total_bytes", *CALLER_FIELDS),
    ),
    LogEvent(
        "retention_deleted",
        ("request_id", "receipt_id", "blob_count", "total_bytes", "retention_days"),
    ),
    LogEvent("history_purged", ("request_id", "instances", "evidence", "phase")),
    LogEvent("package_requested", ("request_id", "language", "state", *CALLER_FIELDS)),
    LogEvent(
        "package_built",
        ("request_id", "parts", "file_count", "total_bytes", "package_sha256", "reused"),
    ),
    LogEvent("package_refused", ("request_id", "code", "added", "removed", "altered")),
    LogEvent(
        "package_reviewed",
        ("request_id", "withheld_count", "approved", "rebuild", *CALLER_FIELDS),
    ),
    LogEvent(
        "package_delivered",
        ("request_id", "parts", "package_sha256", "expires_at", *CALLER_FIELDS),
    ),
    LogEvent(
        "retention_run",
        ("due", "deleted", "purged", "failed", "skipped", "poison_cleared", "rejected_cleared"),
        request_scoped=False,
    ),
    LogEvent("queue_retention_failed", ("queue", "reason"), request_scoped=False),
    LogEvent("retention_failed", ("request_id", "reason")),
    # --- the tenant registry (TENANCY=multi): field names only, never values
    LogEvent(
        "tenant_changed", ("tenant_id", "action", "fields", *CALLER_FIELDS), request_scoped=False
    ),
    LogEvent("tenant_token_failed", ("tenant_id", "reason"), request_scoped=False),
    LogEvent("binding_changed", ("action", "principal_kind", *CALLER_FIELDS), request_scoped=False),
)

#: Every field name any event declares.
ALL_FIELDS: Final = frozenset(field for event in EVENTS.values() for field in event.fields)


class UndeclaredLogEvent(ValueError):
    """A log line that :data:`EVENTS` does not declare: a programming error, found by tests."""


def check(event: str, fields: Mapping[str, object]) -> LogEvent:
    """The declaration of ``event``; raise :class:`UndeclaredLogEvent` if the line breaks it.

    ``fields`` are the keyword arguments of the call. A ``None`` value means "not known here"
    and is left out of the line; a request-scoped event may not leave out its ``request_id``.
    """
    declared = EVENTS.get(event)
    if declared is None:
        raise UndeclaredLogEvent(f"log event {event!r} is not declared in log_events.EVENTS")
    extra = sorted(set(fields) - set(declared.fields))
    if extra:
        raise UndeclaredLogEvent(f"log event {event!r} does not declare the fields {extra}")
    if declared.request_scoped and fields.get("request_id") is None:
        raise UndeclaredLogEvent(f"log event {event!r} names one DSR: request_id is required")
    return declared
