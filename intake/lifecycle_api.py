"""The DSR's life after the export: deliver the data, extend the deadline, retry a failed DSR,
erase the data. Reading needs ``DSR.Read``; each of these needs ``DSR.Manage``.

Each route checks the DSR is in the state its action needs (409 otherwise, saying which state
it is in and what to do), records what it did in the DSR's evidence (who, when, what; never a
URL, a SAS or free text: an operator's reason is kept as its hash) and tells the ticket.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain import events, lifecycle
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.evidence import EVENT_ID, EvidenceRecord, Kind
from dsr_export.domain.extensions import ExtensionAsk, ExtensionRefused
from dsr_export.domain.job import EXTEND_EVENT
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import FieldError, InvalidRequest, decode_body
from dsr_export.domain.status import TERMINAL_PHASES, Phase
from dsr_export.settings import SettingsError, export_policy, lifecycle_settings
from intake import lifecycle as life
from intake import package_api
from intake.responses import (
    authorized,
    json_answer,
    misconfigured,
    problem,
    reason,
    refuse_body,
    valid_route_id,
)
from intake.service import ORCHESTRATOR, document, find, find_dsr, is_live, stored_job

bp = df.Blueprint()

#: Phases a failed DSR may be retried from.
RETRYABLE: Final = frozenset({Phase.FAILED.value, Phase.TIMED_OUT.value})
#: Phases whose data may be erased: the DSR's orchestration has ended.
ENDED: Final = frozenset(phase.value for phase in TERMINAL_PHASES)


@bp.route(route="exports/{requestId}/download", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def download_export(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """A short-lived read + list link to a completed DSR's data; returned once, never stored."""
    given = _prologue(req, with_body=False)
    if isinstance(given, func.HttpResponse):
        return given
    caller, request_id, _ = given
    found = await _find(client, request_id)
    if isinstance(found, func.HttpResponse):
        return found
    status, doc, recs = found.status, found.doc, found.records()
    assert status is not None
    if doc["phase"] != Phase.COMPLETED.value:
        return _conflict(f"the DSR is {doc['phase']}: only a completed DSR has data to deliver")
    deleted = lifecycle.last_deletion(recs)
    if deleted is not None:
        return _conflict(
            f"the data was deleted ({lifecycle.receipt(deleted)['reason']}, receipt "
            f"{deleted.data.get('receiptId')})"
        )
    container = doc.get("container")
    # The subject's package, when there is one (or review requires it): intake/package_api.py.
    packaged = await package_api.deliver_package(client, status, recs, caller)
    if packaged is not None:
        return packaged
    storage = composition.export_storage()
    if not isinstance(container, str) or not storage.has_data(container):
        return _conflict("the exported data no longer exists")
    minutes = lifecycle_settings().download_link_minutes
    url, expires = storage.download_link(
        container, composition.real_now(), timedelta(minutes=minutes)
    )
    now = composition.now()
    manifest = doc.get("manifest") if isinstance(doc.get("manifest"), dict) else {}
    composition.evidence_log().append(
        status.instance_id,
        Kind.EXPORT_DELIVERED,
        now,
        {
            EVENT_ID: f"delivered-{sum(1 for r in recs if r.kind is Kind.EXPORT_DELIVERED) + 1}-"
            f"{expires.isoformat()}",
            "container": container,
            "channel": "download-link",
            "permissions": "read,list",
            "expiresAt": expires.isoformat(),
            "manifestSha256": (manifest or {}).get("manifestSha256"),
            "actorKind": caller.kind,
            "actorId": caller.id,
        },
    )
    log_event(
        "dsr_delivered",
        request_id=status.instance_id,
        caller_kind=caller.kind,
        caller_id=caller.id,
        expires_at=expires.isoformat(),
    )
    await life.notify(
        client, life.job_of(status), events.DELIVERED, now, {"expiresAt": expires.isoformat()}
    )
    body = {
        "requestId": status.instance_id,
        "url": url,
        "expiresAt": expires.isoformat(),
        "container": container,
        "permissions": ["read", "list"],
        "manifestBlob": "manifest.json",
    }
    answer = json_answer(body, 201)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@bp.route(route="exports/{requestId}/extend", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def extend_deadline(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Move the legal deadline within the regulation's cap; the DSR applies it, re-arms its
    warning and overdue notices and tells the ticket (``deadline.extended``)."""
    given = _reasoned(req)
    if isinstance(given, func.HttpResponse):
        return given
    caller, request_id, payload, why = given
    try:
        ask = ExtensionAsk.parse({**payload, "reason": why})
    except ExtensionRefused as exc:
        return _invalid(exc)
    found = await _find(client, request_id)
    if isinstance(found, func.HttpResponse):
        return found
    status, doc = found.status, found.doc
    assert status is not None
    if doc["phase"] in ENDED or doc["phase"] == Phase.FINALIZING.value or not is_live(status):
        hint = " (retry it first)" if doc["phase"] in RETRYABLE else ""
        return _conflict(f"the DSR is {doc['phase']}: only a running DSR is extended{hint}")
    job = life.job_of(status)
    if job is None:
        return _conflict("the DSR's state cannot be read")
    now = composition.now()
    custom = lifecycle_settings().custom_extension_max_days
    try:
        # Judged against the deadline as it stands, to refuse at once what can never pass; the
        # DSR judges it again in turn, after the asks that came before it.
        job.extended_by(ask, now, custom_max_days=custom)
    except ExtensionRefused as exc:
        return _invalid(exc)
    ask_id = f"ask_{uuid.uuid4().hex}"
    # The ask is recorded before the DSR is told: the event only announces it, so an event
    # the task hub drops (or repeats) loses (or doubles) nothing.
    record = composition.evidence_log().append(
        status.instance_id,
        Kind.EXTENSION_ASKED,
        now,
        {
            EVENT_ID: f"extension-asked:{ask_id}",
            "askId": ask_id,
            "days": ask.days,
            "months": ask.months,
            "reasonCode": ask.reason_code,
            "reasonSha256": ask.reason_sha256,
            "actorKind": caller.kind,
            "actorId": caller.id,
        },
    )
    await client.raise_event(status.instance_id, EXTEND_EVENT, {"askId": ask_id})
    log_event(
        "dsr_extended",
        request_id=status.instance_id,
        ask_id=ask_id,
        previous_deadline=job.legal_deadline,
        extension_days=ask.days,
        extension_months=ask.months,
        reason_code=ask.reason_code,
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    # Accepted, pending: the deadline it gives is known once the DSR applied it after every
    # ask before it (it may still refuse it then, past the regulation's cap).
    location = f"/api/exports/{status.instance_id}"
    body = {
        "requestId": status.instance_id,
        "askId": ask_id,
        "state": "pending",
        "asked": {
            key: value
            for key, value in (("days", ask.days), ("months", ask.months))
            if value is not None
        },
        "reasonCode": ask.reason_code,
        "askedAt": now.isoformat(),
        "evidence": {"seq": record.seq, "hash": record.hash},
        "statusUrl": location,
        "detail": (
            "the DSR applies asks in the order they arrive; its status lists this one under "
            "extensions (askId) once applied, or under refusedExtensions"
        ),
    }
    return json_answer(body, 202, location=location)


@bp.route(route="exports/{requestId}/retry", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def retry_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Run a failed or timed-out DSR again under the same id and legal deadline, in a fresh
    container; the same call twice starts one attempt."""
    given = _reasoned(req)
    if isinstance(given, func.HttpResponse):
        return given
    caller, request_id, _, why = given
    found = await _find(client, request_id)
    if isinstance(found, func.HttpResponse):
        return found
    status, doc = found.status, found.doc
    assert status is not None
    if doc["phase"] not in RETRYABLE or is_live(status):
        if is_live(status) and int(doc.get("attempt") or 1) > 1:
            # Already retried (this call, sent twice): the attempt under way is the answer.
            return json_answer(doc, 202, location=f"/api/exports/{status.instance_id}")
        return _conflict(f"the DSR is {doc['phase']}: only a failed or timed-out DSR is retried")
    job = life.job_of(status)
    if job is None:
        return _conflict("the DSR's state cannot be read")
    ended = life.output_of(status)
    try:
        attempt = job.next_attempt(ended).replace(policy=export_policy())
    except SettingsError as exc:
        return misconfigured(exc)
    now = composition.now()
    error = ended.get("error") if isinstance(ended.get("error"), dict) else {}
    composition.evidence_log().append(
        status.instance_id,
        Kind.RETRIED,
        now,
        {
            EVENT_ID: f"retried-{attempt.attempt}",
            "attempt": attempt.attempt,
            "previousPhase": doc["phase"],
            "previousErrorCode": (error or {}).get("code"),
            "container": ended.get("container"),
            "reasonSha256": life.reason_sha256(why),
            "actorKind": caller.kind,
            "actorId": caller.id,
        },
    )
    try:
        await client.start_new(ORCHESTRATOR, status.instance_id, attempt.to_input())
    except Exception as exc:  # the SDK raises a bare Exception
        if "already exists" not in str(exc):
            raise
    else:
        log_event(
            "dsr_retried",
            request_id=status.instance_id,
            attempt=attempt.attempt,
            previous_phase=doc["phase"],
            previous_code=(error or {}).get("code"),
            caller_kind=caller.kind,
            caller_id=caller.id,
        )
    started = await find(client, status.instance_id, show_input=True)
    if started is None:  # gone between two calls: transient
        raise RuntimeError(f"instance {status.instance_id} vanished after a retry")
    answer = document(started, now, attempt)
    answer.update({k: v for k, v in attempt.legal_body().items() if k not in answer})
    return json_answer(answer, 202, location=f"/api/exports/{status.instance_id}")


@bp.route(route="exports/{requestId}/data", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def erase_data(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Delete the DSR's exported data now and answer with the deletion receipt."""
    given = _reasoned(req)
    if isinstance(given, func.HttpResponse):
        return given
    caller, request_id, _, why = given
    found = await _find(client, request_id, allow_purged=True)
    if isinstance(found, func.HttpResponse):
        return found
    status, doc = found.status, found.doc
    if doc["phase"] not in ENDED or (status is not None and is_live(status)):
        return _conflict(f"the DSR is {doc['phase']}: cancel it first, or wait until it ends")
    request_id = str(doc["requestId"])
    now = composition.now()
    done = life.delete_data(request_id, now=now, kind=Kind.ERASED, actor=caller, reason=why)
    if done is None:
        earlier = lifecycle.last_deletion(found.records())
        detail = "the DSR has no exported data"
        if earlier is not None:
            detail += f" (deleted before: receipt {earlier.data.get('receiptId')})"
        return _conflict(detail)
    receipt = done.receipt
    log_event(
        "dsr_erased",
        request_id=request_id,
        receipt_id=receipt["receiptId"],
        blob_count=receipt.get("blobCount"),
        total_bytes=receipt.get("totalBytes"),
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    if status is not None:
        await life.notify(
            client,
            life.job_of(status),
            events.ERASED,
            now,
            {"receiptId": receipt["receiptId"], "deletedAt": receipt["deletedAt"]},
        )
    return json_answer(receipt, 200)


# -- the prologue every route shares ----------------------------------------------------------


@dataclass
class _Found:
    """The DSR a route acts on: its instance (None once purged), its status document, and its
    evidence, read only by the routes that need it, once."""

    request_id: str
    status: df.DurableOrchestrationStatus | None
    doc: dict[str, Any]
    _records: list[EvidenceRecord] | None = None

    def records(self) -> list[EvidenceRecord]:
        if self._records is None:
            self._records = life.records(self.request_id)
        return self._records


def _prologue(
    req: func.HttpRequest, *, with_body: bool
) -> tuple[Caller, str, dict[str, Any]] | func.HttpResponse:
    """The caller (``DSR.Manage``), the route's request id and the body (an object; none for
    a route that takes none), checked in that order; or the refusal to send."""
    caller = authorized(req, Role.MANAGE)
    if isinstance(caller, func.HttpResponse):
        return caller
    request_id = valid_route_id(req)
    if isinstance(request_id, func.HttpResponse):
        return request_id
    if not with_body and not (req.get_body() or b"").strip():
        return caller, request_id, {}
    payload = _body(req)
    if isinstance(payload, func.HttpResponse):
        return payload
    return caller, request_id, payload


def _reasoned(
    req: func.HttpRequest,
) -> tuple[Caller, str, dict[str, Any], str] | func.HttpResponse:
    """:func:`_prologue` for the routes whose body must give a ``reason``: and that reason."""
    given = _prologue(req, with_body=True)
    if isinstance(given, func.HttpResponse):
        return given
    caller, request_id, payload = given
    try:
        return caller, request_id, payload, reason(payload)
    except InvalidRequest as exc:
        return problem(400, "Invalid request", "a reason is required", "invalid-request", exc)


async def _find(
    client: df.DurableOrchestrationClient, request_id: str, *, allow_purged: bool = False
) -> _Found | func.HttpResponse:
    """The DSR, or the refusal to send. A DSR whose history was purged is found by its
    evidence when ``allow_purged``."""
    status = await find_dsr(client, request_id, show_input=True)
    if status is not None:
        return _Found(request_id, status, document(status, composition.now(), stored_job(status)))
    found = _Found(request_id, None, {})
    purged = lifecycle.purged_status(found.records()) if found.records() else None
    if purged is not None and allow_purged:
        found.doc = purged
        return found
    if purged is not None:
        return _conflict("the DSR's history was purged; only its evidence remains")
    return problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")


def _body(req: func.HttpRequest) -> dict[str, Any] | func.HttpResponse:
    refused = refuse_body(req)
    if refused is not None:
        return refused
    try:
        payload = decode_body(req.get_body() or b"")
    except InvalidRequest as exc:
        return problem(400, "Malformed JSON", "the body is not valid JSON", "invalid-request", exc)
    if not isinstance(payload, dict):
        error = FieldError("", "must be a JSON object")
        return problem(
            400, "Invalid request", "the body must be an object", "invalid-request", [error]
        )
    return payload


def _conflict(detail: str) -> func.HttpResponse:
    return problem(409, "DSR in the wrong state", detail, "conflict")


def _invalid(exc: ExtensionRefused) -> func.HttpResponse:
    error = FieldError(exc.pointer, exc.detail)
    return problem(400, "Extension not allowed", exc.detail, "invalid-request", [error])
