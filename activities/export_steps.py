"""The export's activities: each one I/O step, idempotent, returning non-secret facts.

Graph's answers come back as results with an explicit outcome so the orchestrator can tell
permanent failures (``failed``: fail the DSR now) from throttling (``retry``: wait on a durable
timer). Anything raised is unexpected and retried by the orchestrator's retry options. The
parts (Graph client, export storage, clock) come from the composition root.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import azure.durable_functions as df

from activities.contract import activity, graph_activity
from dsr_export import composition
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain import errors, pacing, steps
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.errors import (
    STORAGE_LOCATION_INVALID,
    Subject,
    classify,
    submit_outcome_unknown,
)
from dsr_export.domain.evidence import (
    BrokenRecord,
    EvidenceRecord,
    Kind,
    generation_event_id,
    parse_record,
)
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import container_name
from dsr_export.domain.steps import GraphStepResult, Outcome
from dsr_export.settings import SasMode, export_storage_settings, lifecycle_settings

if TYPE_CHECKING:  # the Graph adapter loads requests: not on the cold-start path
    from dsr_export.adapters.graph import SubmittedExport

bp = df.Blueprint()

Result = TypeVar("Result", bound=GraphStepResult)


@graph_activity(bp, steps.RESOLVE_USER)
def resolve_user(step: steps.ResolveUser) -> steps.UserResolved:
    """UPN -> object id (exportPersonalData takes object ids only)."""
    try:
        user_id = composition.graph_of(step.request_id).resolve_user_id(step.user)
    except GraphError as exc:
        return _graph_failure(steps.RESOLVE_USER, step.request_id, exc, subject="user")
    log_event("user_resolved", request_id=step.request_id, phase="resolving_user")
    return steps.UserResolved(user_id=user_id)


@graph_activity(bp, steps.PREPARE_CONTAINER)
def prepare_container(step: steps.PrepareContainer) -> steps.ContainerPrepared:
    """Create the DSR's own container; report whether a submit already reached Graph."""
    storage, name = (
        composition.export_storage_of(step.request_id),
        container_name(step.request_id, step.attempt),
    )
    if step.attempt > 1:
        # The container before this one is abandoned (Graph refused it, or never posted its
        # export, or its attempt ended): no SAS for it may stay usable.
        storage.revoke(container_name(step.request_id, step.attempt - 1))
    exists = storage.prepare(name, composition.real_now())
    log_event(
        "container_prepared",
        request_id=step.request_id,
        phase="preparing_storage",
        container=name,
        request_info_exists=exists,
    )
    return steps.ContainerPrepared(
        container=name,
        request_info_exists=exists,
        settle_seconds=0 if exists else storage.policy_settle_seconds,
    )


@graph_activity(bp, steps.SUBMIT_EXPORT)
def submit_export(step: steps.SubmitExport) -> steps.ExportSubmitted:
    """Mint the SAS here (it never leaves this function) and POST exportPersonalData."""
    storage, name = composition.export_storage_of(step.request_id), step.container
    if storage.request_info_exists(name):
        # An earlier attempt of this activity reached Graph (its answer was lost, or the worker
        # died before the result was stored): submitting again would fail with
        # StorageLocationAlreadyUsed or start a second export. The orchestrator recovers it.
        return steps.ExportSubmitted(outcome=Outcome.UNKNOWN)
    now = composition.now()
    sas_url, expires_at = storage.mint_graph_sas(name, composition.real_now())
    _warn_of_sas_lifetime(step.request_id, expires_at)
    try:
        submitted = composition.graph_of(step.request_id).submit_export(step.user_id, sas_url)
    except GraphError as exc:
        if exc.code == "StorageLocationAlreadyUsed":
            return steps.ExportSubmitted(outcome=Outcome.UNKNOWN)
        if exc.code == STORAGE_LOCATION_INVALID:
            unanswered = storage.unanswered(name)
            if unanswered is not None:
                return _storage_outage(step, exc, unanswered)
        return _graph_failure(steps.SUBMIT_EXPORT, step.request_id, exc, subject="submit")
    finally:
        del sas_url
    return _submitted(step, submitted, now, expires_at)


def _warn_of_sas_lifetime(request_id: str, expires_at: datetime) -> None:
    """A user-delegation SAS lives at most 7 days: an export running longer fails."""
    if export_storage_settings().sas_mode is SasMode.USER_DELEGATION:
        log_event(
            "sas_lifetime_limited",
            level=logging.WARNING,
            request_id=request_id,
            phase="submitting",
            sas_expires_at=expires_at.isoformat(),
            consequence="an export still running after this time fails",
        )


def _submitted(
    step: steps.SubmitExport, submitted: SubmittedExport, now: datetime, expires_at: datetime
) -> steps.ExportSubmitted:
    """Graph accepted the export: logged, recorded in the evidence, returned."""
    name = step.container
    log_event(
        "export_submitted",
        request_id=step.request_id,
        phase="submitting",
        operation_id=submitted.operation_id,
    )
    _evidence(
        step.request_id,
        entries.Submitted(
            event_id=f"submitted:{name}",
            operation_id=submitted.operation_id,
            container=name,
            sas_mode=export_storage_settings().sas_mode.value,
            sas_expiry=expires_at.isoformat(),
            user_object_id=step.user_id,
        ),
    )
    return steps.ExportSubmitted(
        outcome=Outcome.ACCEPTED,
        operation_id=submitted.operation_id,
        operation_url=submitted.operation_url,
        retry_after_seconds=submitted.retry_after_seconds,
        submitted_at=now.isoformat(),
        sas_expires_at=expires_at.isoformat(),
    )


def _storage_outage(
    step: steps.SubmitExport, exc: GraphError, reason: str
) -> steps.ExportSubmitted:
    """Graph's catch-all ``StorageLocationInvalid`` while the app cannot reach the container
    either: the export storage is down, and the SAS is not at fault.

    Graph posted no export (its checks come before the command), but it may have left a
    partial ``RequestInfo.json`` behind: the orchestrator waits, then submits again into a
    fresh container.
    """
    log_event(
        "storage_unavailable",
        level=logging.WARNING,
        request_id=step.request_id,
        step=steps.SUBMIT_EXPORT.name,
        reason=reason,
        waiting_for="export storage",
        graph_code=exc.code,
        graph_request_id=exc.graph_request_id,
    )
    error = errors.storage_unreachable(classify(exc, subject="submit").error, reason)
    return steps.ExportSubmitted.resubmit(pacing.STORAGE_BASE_SECONDS, error)


@graph_activity(bp, steps.RECOVER_SUBMIT)
def recover_submit(step: steps.RecoverSubmit) -> steps.ExportRecovered:
    """Look up the export behind Graph's receipt; never submits anything.

    ``ok``: Graph knows the operation and it is this user's (carry on polling it); ``absent``:
    Graph knows no operation of that id (the command was never posted), or the receipt cannot
    be read yet; anything doubtful fails the DSR as SubmitOutcomeUnknown (a second export is
    the worse risk)."""
    storage, name = composition.export_storage_of(step.request_id), step.container
    receipt = storage.read_request_info(name)
    command = str(receipt.get("CommandId") or "") if receipt else ""
    if not command:
        return _unreadable_receipt(step)
    url = composition.graph_of(step.request_id).operation_url(command)
    try:
        operation = composition.graph_of(step.request_id).get_operation(url)
    except GraphError as exc:
        if exc.code == "OperationNotFound":
            if step.final:
                storage.revoke(name)  # nothing writes there now; the SAS must not outlive it
            log_event(
                "submit_not_posted",
                request_id=step.request_id,
                phase="submitting",
                container=name,
                final=step.final,
            )
            return steps.ExportRecovered(outcome=Outcome.ABSENT)
        return _graph_failure(steps.RECOVER_SUBMIT, step.request_id, exc, subject="poll")
    if operation.user_id is not None and operation.user_id != step.user_id.lower():
        return steps.ExportRecovered.failed(submit_outcome_unknown(name))
    now = composition.now()
    minted = operation.submitted_at or now
    log_event(
        "submit_recovered",
        request_id=step.request_id,
        phase="submitting",
        operation_id=command,
        container=name,
    )
    _evidence(
        step.request_id,
        entries.SubmitRecovered(event_id=f"recovered:{name}", operation_id=command, container=name),
    )
    return steps.ExportRecovered(
        operation_id=command,
        operation_url=url,
        submitted_at=minted.isoformat(),
        sas_expires_at=storage.graph_sas_expiry(name, minted).isoformat(),
        retry_after_seconds=pacing.FIRST_POLL_SECONDS,
    )


def _unreadable_receipt(step: steps.RecoverSubmit) -> steps.ExportRecovered:
    """Graph writes its receipt in two steps (create, then append) while it checks the SAS,
    and a host killed mid-submit can leave it half-written: not yet a verdict (``absent``:
    look again). Only a receipt still unreadable at the last lookup ends the DSR, as
    SubmitOutcomeUnknown (never a second export)."""
    log_event(
        "submit_receipt_unreadable",
        level=logging.WARNING,
        request_id=step.request_id,
        phase="submitting",
        container=step.container,
        final=step.final,
    )
    if not step.final:
        return steps.ExportRecovered(outcome=Outcome.ABSENT)
    return steps.ExportRecovered.failed(submit_outcome_unknown(step.container))


@graph_activity(bp, steps.CHECK_EXPORT)
def check_export(step: steps.CheckExport) -> steps.ExportChecked:
    """GET the dataPolicyOperation once."""
    try:
        operation = composition.graph_of(step.request_id).get_operation(step.operation_url)
    except GraphError as exc:
        return _graph_failure(steps.CHECK_EXPORT, step.request_id, exc, subject="poll")
    log_event(
        "export_checked",
        request_id=step.request_id,
        phase="exporting",
        graph_status=operation.status,
        progress=operation.progress,
    )
    if operation.status != step.last_status:
        operation_id = operation.id or step.operation_url.rsplit("/", 1)[-1]
        _evidence(
            step.request_id,
            entries.GraphStatusChanged(
                event_id=f"graph:{operation_id}:{operation.status}",
                operation_id=operation.id or None,
                graph_status=operation.status,
                previous_status=step.last_status,
            ),
        )
    return steps.ExportChecked(status=operation.status, progress=operation.progress)


@activity(bp, steps.FINALIZE_EXPORT)
def finalize_export(step: steps.FinalizeExport) -> steps.ExportFinalized:
    """Write the manifest (completed exports only), revoke the SAS, record how it ended."""
    storage, name = composition.export_storage_of(step.request_id), step.container
    manifest = None
    if step.write_manifest:
        manifest = storage.write_manifest(name, step.request_id, composition.now()).to_dict()
    revoked = storage.revoke(name)
    sas = {"revoked": revoked, "expiresAt": None if revoked else step.sas_expires_at}
    log_event(
        "export_finalized",
        request_id=step.request_id,
        phase="finalizing",
        sas_revoked=revoked,
        blobs=manifest["blobCount"] if manifest else None,
    )
    _record_ending(step, name, manifest, sas)
    return steps.ExportFinalized(manifest=manifest, sas=sas)


@activity(bp, steps.RECORD_FINISHED)
def record_finished(step: steps.RecordFinished) -> steps.Recorded:
    """How a DSR that never had a container ended (the user lookup failed, a cancel before
    storage was ready...): without it the retention run could not tell the DSR ended."""
    record = _evidence(
        step.request_id,
        entries.Finished(
            event_id=generation_event_id("finished", step.attempt),
            phase=step.phase,
            error_code=step.error_code,
            error_category=step.error_category,
            operation_id=step.operation_id,
        ),
    )
    return steps.Recorded(seq=record.seq)


def _record_ending(
    step: steps.FinalizeExport,
    container: str,
    manifest: dict[str, Any] | None,
    sas: dict[str, Any],
) -> None:
    """The DSR's last records: what was exported, what became of the SAS, how it ended."""
    if manifest is not None:
        completed = entries.Completed(
            event_id=generation_event_id("completed", step.attempt),
            operation_id=step.operation_id,
            container=container,
            blob_count=manifest["blobCount"],
            total_bytes=manifest["totalBytes"],
            products=manifest["products"],
            manifest_sha256=manifest.get("manifestSha256"),
        )
        _evidence(step.request_id, completed)
    revoked = entries.SasRevoked(
        event_id=generation_event_id("sas_revoked", step.attempt),
        container=container,
        sas_mode=export_storage_settings().sas_mode.value,
        revoked=bool(sas["revoked"]),
        sas_expiry=sas.get("expiresAt"),
    )
    _evidence(step.request_id, revoked)
    if step.ending in {"failed", "timed_out", "cancelled"}:
        finished = entries.Finished(
            event_id=generation_event_id("finished", step.attempt),
            phase=step.ending,
            error_code=step.error_code,
            error_category=step.error_category,
            operation_id=step.operation_id,
        )
        _evidence(step.request_id, finished)


@activity(bp, steps.RECORD_EXTENSION)
def record_extension(step: steps.RecordExtension) -> steps.Recorded:
    """The extension the orchestrator applied, in the DSR's evidence (once per ask)."""
    record = _evidence(
        step.request_id,
        entries.Extended(
            # Histories of earlier versions carry no ask id: their key was the number.
            event_id=f"extended:{step.ask_id}" if step.ask_id else f"extended-{step.number}",
            ask_id=step.ask_id,
            previous_deadline=step.previous_deadline,
            deadline=step.deadline,
            original_deadline=step.original_deadline,
            extension_days=step.extension_days,
            reason_code=step.reason_code,
            reason_sha256=step.reason_sha256,
            actor_kind=step.actor_kind,
            actor_id=step.actor_id,
        ),
    )
    return steps.Recorded(seq=record.seq)


@activity(bp, steps.READ_EXTENSION_ASKS)
def read_extension_asks(step: steps.ReadExtensionAsks) -> steps.ExtensionAsks:
    """The extension asks the API recorded after record ``after_seq``, oldest first: the
    asks themselves, which the ``extend`` event only announces."""
    asks: list[dict[str, Any]] = []
    for line in composition.evidence_log().read(step.request_id):
        try:
            record = parse_record(line)
        except BrokenRecord:
            continue  # the verifier names it; an ask is never read from a broken record
        if record.kind is not Kind.EXTENSION_ASKED or record.seq <= step.after_seq:
            continue
        data = record.data
        fields = ("days", "months", "reasonCode", "reasonSha256")
        asks.append(
            {
                "askId": data.get("askId"),
                "seq": record.seq,
                "ask": {key: data[key] for key in fields if key in data},
                "actor": {"kind": data.get("actorKind"), "id": data.get("actorId")},
            }
        )
        if len(asks) == steps.ASKS_PER_READ:
            break
    limit = lifecycle_settings().custom_extension_max_days
    return steps.ExtensionAsks(asks=asks, custom_max_days=limit)


def _evidence(request_id: str, entry: entries.Entry) -> EvidenceRecord:
    """Append one record to the DSR's evidence; a retry of the activity appends nothing twice
    (the entry's event id)."""
    return composition.evidence_log().write(request_id, entry, composition.now())


def _graph_failure(
    step: steps.Step[Any, Result], request_id: str, exc: GraphError, *, subject: Subject
) -> Result:
    decision = classify(exc, subject=subject)
    log_event(
        "graph_error",
        level=logging.WARNING if decision.retry else logging.ERROR,
        request_id=request_id,
        step=step.name,
        status=exc.status,
        code=exc.code,
        graph_request_id=exc.graph_request_id,
        client_request_id=exc.client_request_id,
    )
    if decision.retry:
        return step.result_type.retry(decision.retry_after_seconds, decision.error)
    return step.result_type.failed(decision.error)
