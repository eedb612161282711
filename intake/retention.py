"""Retention, unattended: exported data and durable history do not outlive their purpose.

Daily (and on demand: ``POST /admin/functions/retention_sweep`` with the master key, in Azure as
on the offline host), for every DSR that has ended:

* ``EXPORT_RETENTION_DAYS`` after it ended, every container of the DSR is deleted and a
  deletion receipt written to its evidence (what, how much, the manifest's hash, when, why, by
  whom). The export account's lifecycle rule stays as a later backstop, not the mechanism.
* ``HISTORY_RETENTION_DAYS`` after it ended, its durable history (which holds the UPN) is
  purged, once its evidence says how it ended; the status stays answerable from the evidence.
* ``QUEUE_RETENTION_DAYS`` after they were queued, the poison queue's messages (a request's
  whole body, UPN included) and the rejected queue's records are deleted.

Nothing is deleted early: the age is counted from the DSR's own end (its output's
``completedAt``). A DSR that cannot be handled (storage down, evidence incomplete) is counted
and logged, and the next run tries again; one bad DSR never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub
from dsr_export.adapters.queue_retention import POISON_QUEUE
from dsr_export.adapters.rejections import REJECTED_QUEUE
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import lifecycle
from dsr_export.domain.evidence import Kind
from dsr_export.domain.logs import log_event
from dsr_export.domain.status import TERMINAL_PHASES
from dsr_export.domain.steps import NOTICE_ORCHESTRATOR, ORCHESTRATOR
from dsr_export.settings import LifecycleSettings, lifecycle_settings
from intake import lifecycle_actions
from intake.service import evidence_records

bp = df.Blueprint()

#: NCRONTAB (seconds first), UTC: daily at 02:30, away from the top of the hour.
SCHEDULE: Final = "0 30 2 * * *"
#: How far back the run looks for ended DSRs: longer than any retention setting allows.
LOOKBACK: Final = timedelta(days=3700)
_ENDED_STATES: Final = ("Completed", "Failed", "Terminated")
#: The phases an output ends with: its word that the DSR ended.
ENDED_PHASES: Final = frozenset(phase.value for phase in TERMINAL_PHASES)


@dataclass
class RunCounts:
    """What one run did: DSRs past the export retention (``due``), data deleted, histories
    purged, DSRs skipped (evidence incomplete) and failed (tried again next run; a queue that
    could not be cleared counts here too), queue messages cleared."""

    due: int = 0
    deleted: int = 0
    purged: int = 0
    skipped: int = 0
    failed: int = 0
    #: Messages older than ``QUEUE_RETENTION_DAYS`` deleted from the poison and rejected queues.
    poison_cleared: int = 0
    rejected_cleared: int = 0


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def retention_sweep(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """The daily retention run."""
    await sweep(composition.task_hub(client), composition.now())


async def sweep(hub: TaskHub, now: datetime) -> RunCounts:
    """Delete the data and purge the history that are due at ``now``."""
    settings = lifecycle_settings()
    export_age = timedelta(days=settings.export_retention_days)
    history_age = timedelta(days=settings.history_retention_days)
    counts = RunCounts()
    async for status in _ended_instances(hub, now, export_age):
        ended = lifecycle.ended_at(lifecycle_actions.output_of(status), status.last_updated_time)
        if ended is None or now - ended < export_age:
            continue
        try:
            if status.name == NOTICE_ORCHESTRATOR:
                if now - ended >= history_age:
                    await hub.purge(status.instance_id)
                continue
            if status.name != ORCHESTRATOR:
                continue
            counts.due += 1
            if _delete(status.instance_id, now, ended, settings.export_retention_days):
                counts.deleted += 1
            if now - ended >= history_age:
                output = lifecycle_actions.output_of(status)
                purged = await _purge(hub, status.instance_id, now, ended, settings, output)
                counts.purged += purged is True
                counts.skipped += purged is False
        except Exception as exc:  # noqa: BLE001 - one DSR's trouble must not stop the run
            counts.failed += 1
            log_event(
                "retention_failed",
                level=logging.ERROR,
                request_id=status.instance_id,
                reason=type(exc).__name__,
            )
    _clear_queues(counts, now - timedelta(days=settings.queue_retention_days))
    log_event(
        "retention_run",
        level=logging.WARNING if counts.failed else logging.INFO,
        due=counts.due,
        deleted=counts.deleted,
        purged=counts.purged,
        skipped=counts.skipped,
        failed=counts.failed,
        poison_cleared=counts.poison_cleared,
        rejected_cleared=counts.rejected_cleared,
    )
    return counts


def _clear_queues(counts: RunCounts, cutoff: datetime) -> None:
    """The poison queue keeps a request's whole body (a UPN), the rejected queue a record of
    why: neither outlives ``QUEUE_RETENTION_DAYS``. A queue that cannot be cleared now is
    cleared by the next run."""
    trim = composition.queue_trimmer()
    for queue, field in ((POISON_QUEUE, "poison_cleared"), (REJECTED_QUEUE, "rejected_cleared")):
        try:
            setattr(counts, field, trim(queue, cutoff))
        except Exception as exc:  # noqa: BLE001 - the DSRs' retention is done; count, go on
            counts.failed += 1
            log_event(
                "queue_retention_failed",
                level=logging.ERROR,
                queue=queue,
                reason=type(exc).__name__,
            )


async def _ended_instances(
    hub: TaskHub, now: datetime, export_age: timedelta
) -> AsyncIterator[df.DurableOrchestrationStatus]:
    """The ended instances that can be due, a page of the task hub query at a time (each page
    handled before the next is read). One created after ``now - export_age`` cannot have ended
    before it, so the window stops there."""
    pages = hub.query_pages(
        created_from=now - LOOKBACK,
        created_to=now - export_age,
        runtime_status=list(_ENDED_STATES),
    )
    async with contextlib.aclosing(pages):
        async for page in pages:
            for status in page.statuses:
                yield status


def _delete(request_id: str, now: datetime, ended: datetime, days: int) -> bool:
    done = lifecycle_actions.delete_data(
        request_id,
        now=now,
        kind=Kind.RETENTION_DELETED,
        actor=lifecycle_actions.RETENTION_ACTOR,
        retention_days=days,
        ended_at=ended.isoformat(),
    )
    if done is None:
        return False
    log_event(
        "retention_deleted",
        request_id=request_id,
        receipt_id=done.receipt["receiptId"],
        blob_count=done.receipt.get("blobCount"),
        total_bytes=done.receipt.get("totalBytes"),
        retention_days=days,
    )
    return True


async def _purge(
    hub: TaskHub,
    request_id: str,
    now: datetime,
    ended: datetime,
    settings: LifecycleSettings,
    output: Mapping[str, Any],
) -> bool:
    """Purge the DSR's history once its evidence says how it ended, or its own output does;
    False when neither does (kept).

    A DSR whose evidence is short (it ended before it could write its ``finished`` record, or
    the evidence account refused it) is purged on its output's word, and the record says so
    (``evidence: false``, with the phase and error code the output gave): its history, which
    holds the UPN, must not stay for ever because a record is missing.

    The record comes first: a purge that then fails leaves the instance (which still answers
    for the DSR) and the next run purges it, its record already written; the other order could
    leave a purged DSR whose evidence does not say so, and so no status at all.
    """
    complete = lifecycle.evidence_complete(evidence_records(request_id))
    phase = output.get("phase")
    if not complete and phase not in ENDED_PHASES:
        log_event("retention_failed", request_id=request_id, reason="EvidenceIncomplete")
        return False
    _record_purge(request_id, now, ended, settings.history_retention_days, complete, output)
    deleted = await hub.purge(request_id)
    log_event(
        "history_purged",
        request_id=request_id,
        instances=deleted,
        evidence="complete" if complete else "short",
        phase=phase if isinstance(phase, str) else None,
    )
    return True


def _record_purge(
    request_id: str,
    now: datetime,
    ended: datetime,
    days: int,
    complete: bool,
    output: Mapping[str, Any],
) -> None:
    """The ``history_purged`` record: with the phase and error code the output gave when the
    evidence is short."""
    error = output.get("error") if isinstance(output.get("error"), Mapping) else {}
    purged = entries.HistoryPurged(
        event_id=f"history-purged-{ended.isoformat()}",
        retention_days=days,
        evidence=complete,
        ended_phase=None if complete else output.get("phase"),
        ended_at=None if complete else ended.isoformat(),
        error_code=None if complete else (error or {}).get("code"),
        actor_kind=lifecycle_actions.RETENTION_ACTOR.kind,
        actor_id=lifecycle_actions.RETENTION_ACTOR.id,
    )
    composition.evidence_log().write(request_id, purged, now)
