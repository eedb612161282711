"""The export's activities: each one I/O step, idempotent, returning non-secret facts.

Graph's answers come back as results with an explicit ``outcome`` so the orchestrator can tell
permanent failures (``failed``: fail the DSR now) from throttling (``retry``: wait on a durable
timer). Anything raised is unexpected and retried by the orchestrator's retry options.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
from azure.identity import DefaultAzureCredential

from dsr_export.errors import Subject, classify, setup_error, submit_outcome_unknown
from dsr_export.graph import GraphClient, GraphError
from dsr_export.logs import log_event
from dsr_export.model import container_name
from dsr_export.sas import POLICY_SETTLE_SECONDS
from dsr_export.settings import SasMode, export_storage_settings, graph_settings
from dsr_export.storage import ExportStorage

bp = df.Blueprint()


@functools.cache
def _credential() -> DefaultAzureCredential:
    # Managed identity in Azure (AZURE_CLIENT_ID selects a user-assigned one).
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


@functools.cache
def _graph() -> GraphClient:
    return GraphClient(graph_settings(), _credential())


@functools.cache
def _storage() -> ExportStorage:
    return ExportStorage(export_storage_settings(), _credential())


def _now() -> datetime:
    return datetime.now(UTC)


Activity = Callable[[dict[str, Any]], dict[str, Any]]


def _fails_fast_on_setup_errors(activity: Activity) -> Activity:
    """Turn an operator-only problem (a setting, storage refusing the app) into a ``failed``
    result instead of an exception the orchestrator would retry five times."""

    @functools.wraps(activity)
    def run(job: dict[str, Any]) -> dict[str, Any]:
        try:
            return activity(job)
        except Exception as exc:
            error = setup_error(exc)
            if error is None:
                raise
            log_event(
                "setup_error",
                level=logging.ERROR,
                request_id=job.get("requestId"),
                step=activity.__name__,
                code=error["code"],
                setting=error.get("setting"),
            )
            return {"outcome": "failed", "error": error}

    return run


@bp.activity_trigger(input_name="job")
@_fails_fast_on_setup_errors
def resolve_user(job: dict[str, Any]) -> dict[str, Any]:
    """UPN -> object id (exportPersonalData takes object ids only)."""
    try:
        user_id = _graph().resolve_user_id(job["user"])
    except GraphError as exc:
        return _graph_failure("resolve_user", job, exc, subject="user")
    log_event("user_resolved", request_id=job["requestId"], phase="resolving_user")
    return {"outcome": "ok", "userId": user_id}


@bp.activity_trigger(input_name="job")
@_fails_fast_on_setup_errors
def prepare_container(job: dict[str, Any]) -> dict[str, Any]:
    """Create the DSR's own container; report whether a submit already reached Graph."""
    name = container_name(job["requestId"])
    exists = _storage().prepare(name, _now())
    stored_policy = export_storage_settings().sas_mode is SasMode.STORED_POLICY
    log_event(
        "container_prepared",
        request_id=job["requestId"],
        phase="preparing_storage",
        container=name,
        request_info_exists=exists,
    )
    return {
        "outcome": "ok",
        "container": name,
        "requestInfoExists": exists,
        "settleSeconds": POLICY_SETTLE_SECONDS if stored_policy and not exists else 0,
    }


@bp.activity_trigger(input_name="job")
@_fails_fast_on_setup_errors
def submit_export(job: dict[str, Any]) -> dict[str, Any]:
    """Mint the SAS here (it never leaves this function) and POST exportPersonalData."""
    storage, name = _storage(), job["container"]
    if storage.request_info_exists(name):
        # An earlier attempt of this activity reached Graph (its answer was lost): submitting
        # again would fail with StorageLocationAlreadyUsed or start a second export.
        return {"outcome": "failed", "error": submit_outcome_unknown(name)}
    now = _now()
    sas_url, expires_at = storage.mint_graph_sas(name, now)
    if export_storage_settings().sas_mode is SasMode.USER_DELEGATION:
        log_event(
            "sas_lifetime_limited",
            level=logging.WARNING,
            request_id=job["requestId"],
            phase="submitting",
            sas_expires_at=expires_at.isoformat(),
            consequence="an export still running after this time fails",
        )
    try:
        submitted = _graph().submit_export(job["userId"], sas_url)
    except GraphError as exc:
        if exc.code == "StorageLocationAlreadyUsed":
            return {"outcome": "failed", "error": submit_outcome_unknown(name)}
        return _graph_failure("submit_export", job, exc, subject="submit")
    finally:
        del sas_url
    log_event(
        "export_submitted",
        request_id=job["requestId"],
        phase="submitting",
        operation_id=submitted.operation_id,
    )
    return {
        "outcome": "accepted",
        "operationId": submitted.operation_id,
        "operationUrl": submitted.operation_url,
        "retryAfterSeconds": submitted.retry_after_seconds,
        "submittedAt": now.isoformat(),
        "sasExpiresAt": expires_at.isoformat(),
    }


@bp.activity_trigger(input_name="job")
@_fails_fast_on_setup_errors
def check_export(job: dict[str, Any]) -> dict[str, Any]:
    """GET the dataPolicyOperation once."""
    try:
        operation = _graph().get_operation(job["operationUrl"])
    except GraphError as exc:
        return _graph_failure("check_export", job, exc, subject="poll")
    log_event(
        "export_checked",
        request_id=job["requestId"],
        phase="exporting",
        graph_status=operation.status,
        progress=operation.progress,
    )
    return {
        "outcome": "ok",
        "status": operation.status,
        "progress": operation.progress,
        "completedAt": operation.completed_at.isoformat() if operation.completed_at else None,
    }


@bp.activity_trigger(input_name="job")
def finalize_export(job: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest (completed exports only), revoke the SAS, store the audit record."""
    storage, name = _storage(), job["container"]
    manifest = None
    if job.get("writeManifest"):
        manifest = storage.write_manifest(name, job["requestId"], _now()).to_dict()
    revoked = storage.revoke(name)
    if job.get("audit") is not None:
        sas = {"revoked": revoked, "expiresAt": None if revoked else job.get("sasExpiresAt")}
        storage.write_audit(name, {**job["audit"], "manifest": manifest, "sas": sas})
    log_event(
        "export_finalized",
        request_id=job["requestId"],
        phase="finalizing",
        sas_revoked=revoked,
        blobs=manifest["blobCount"] if manifest else None,
    )
    return {
        "manifest": manifest,
        "sas": {"revoked": revoked, "expiresAt": None if revoked else job.get("sasExpiresAt")},
    }


def _graph_failure(
    step: str, job: dict[str, Any], exc: GraphError, *, subject: Subject
) -> dict[str, Any]:
    verdict = classify(exc, subject=subject)
    log_event(
        "graph_error",
        level=logging.WARNING if verdict.retry else logging.ERROR,
        request_id=job["requestId"],
        step=step,
        status=exc.status,
        code=exc.code,
        graph_request_id=exc.graph_request_id,
        client_request_id=exc.client_request_id,
    )
    if verdict.retry:
        return {
            "outcome": "retry",
            "retryAfterSeconds": verdict.retry_after_seconds,
            "error": verdict.error,
        }
    return {"outcome": "failed", "error": verdict.error}
