"""The HTTP face for ticketing systems: submit, read, list and cancel DSRs; the API document.

Every route is function-level (the app's default): the host answers 401 without a key, and
each route checks the caller's app role (:mod:`intake.auth`). Client functions must be
``async`` (see the Durable notes). Status comes from our own document, never Durable's built-in
one: that embeds the system key in its URLs and echoes the orchestration input. Every refusal
the app makes is an RFC 9457 problem naming each field at fault (the host's own are bare).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain import lifecycle
from dsr_export.domain.callers import Role
from dsr_export.domain.errors import CANCEL_REASON_CODES, cancel_event
from dsr_export.domain.evidence import EvidenceRecord, evidence_document
from dsr_export.domain.job import CANCEL_EVENT
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import (
    FieldError,
    InvalidRequest,
    canonical_request_id,
    decode_body,
)
from dsr_export.domain.status import TERMINAL_PHASES, Phase
from dsr_export.settings import SettingsError
from intake import listing
from intake.lifecycle import records as lifecycle_records
from intake.responses import authorized as _authorized
from intake.responses import json_answer as _json
from intake.responses import misconfigured as _misconfigured
from intake.responses import problem as _problem
from intake.responses import reason as _reason
from intake.responses import refuse_body as _refuse_body
from intake.responses import route_request_id as _route_request_id
from intake.responses import valid_route_id as _valid_route_id
from intake.service import (
    LIVE_STATES,
    ORCHESTRATOR,
    Admission,
    document,
    find_dsr,
    is_live,
    start_or_get,
    stored_job,
)

bp = df.Blueprint()

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
#: Served as it is; docs/openapi.json is a copy (a test keeps them identical). It lives next to
#: the code so it is deployed with it (.funcignore drops docs/).
OPENAPI_PATH: Final = Path(__file__).with_name("openapi.json")
#: The list covers DSRs created this long ago at most: longer than any DSR runs, and the
#: query stays bounded however long the task hub keeps history.
LIST_WINDOW: Final = timedelta(days=400)


@bp.route(route="exports", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Accept a DSR; the same request again answers with the DSR already under way."""
    caller = _authorized(req, Role.SUBMIT)
    if isinstance(caller, func.HttpResponse):
        return caller
    refused = _refuse_body(req)
    if refused is not None:
        return refused
    try:
        payload = decode_body(req.get_body() or b"")
    except InvalidRequest as exc:
        return _problem(400, "Malformed JSON", "the body is not valid JSON", "invalid-request", exc)
    try:
        outcome = await start_or_get(
            client, payload, now=composition.now(), source="http", caller=caller
        )
    except SettingsError as exc:
        return _misconfigured(exc)
    except Exception as exc:  # noqa: BLE001 - storage or task hub down: nothing was started
        from dsr_export.adapters.failures import setup_error

        found = setup_error(exc)
        log_event(
            "intake_unavailable",
            level=logging.ERROR,
            reason=type(exc).__name__,
            code=found["code"] if found else None,
        )
        if found is not None:  # the export account refuses the app: say what to fix, now
            detail = str(found.get("hint") or found["message"])
            return _problem(503, "Service misconfigured", detail, "misconfigured")
        return _problem(
            503, "Temporarily unavailable", "send the request again later", "unavailable"
        )
    match outcome.verdict:
        case Admission.INVALID:
            return _problem(
                400, "Invalid request", outcome.detail, "invalid-request", outcome.errors
            )
        case Admission.CONFLICT:
            return _problem(
                409, "Request id already used", outcome.detail, "conflict", outcome.errors
            )
    assert outcome.document is not None
    # 202 for a duplicate too: a retrying ticket system sees the same answer every time.
    return _json(outcome.document, 202, location=f"/api/exports/{outcome.request_id}")


@bp.route(route="exports", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_dsrs(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """DSRs oldest first (closest to their deadline), filtered by phase and overdue, paged.

    Paging is keyset: ``continuationToken`` names the last item of the previous page (created
    time and id), so pages stay stable while new DSRs arrive (they sort after it).
    """
    caller = _authorized(req, Role.READ)
    if isinstance(caller, func.HttpResponse):
        return caller
    try:
        query = _ListQuery.parse(req.params)
    except InvalidRequest as exc:
        return _problem(
            400, "Invalid query", "one or more parameters are invalid", "invalid-request", exc
        )
    now = composition.now()

    def accept(status: df.DurableOrchestrationStatus) -> dict[str, Any] | None:
        if status.name != ORCHESTRATOR or not status.runtime_status:
            return None  # a notice orchestration, or a row the extension could not read
        doc = document(status, now)
        if query.phase is not None and doc["phase"] != query.phase:
            return None
        if query.overdue is not None and doc["overdue"] is not query.overdue:
            return None
        return doc

    # One more than the page: whether a next page exists, without reading the task hub on.
    read = await listing.oldest(
        client,
        created_from=now - LIST_WINDOW,
        created_to=now,
        runtime_status=_runtime_filter(query.phase) if query.phase else (),
        after=query.after,
        wanted=query.top + 1,
        accept=accept,
    )
    page = read.rows[: query.top]
    token = _token(page[-1][0]) if len(read.rows) > query.top else None
    return _json({"items": [doc for _, doc in page], "continuationToken": token}, 200)


@bp.route(route="exports/{requestId}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """The DSR's status document (never Durable's URLs, never the input)."""
    request_id = _route_request_id(req, Role.READ)
    if isinstance(request_id, func.HttpResponse):
        return request_id
    # The input is read only to lend a not-yet-started DSR its deadline.
    existing = await find_dsr(client, request_id, show_input=True)
    if existing is None:
        # Purged on schedule: the evidence still answers (phase, dates, outcome, the data).
        records = _evidence_or_none(request_id)
        purged = lifecycle.purged_status(records) if records else None
        if purged is not None:
            return _json(purged, 200)
        return _problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")
    doc = document(existing, composition.now(), stored_job(existing))
    if doc["terminal"]:
        records = _evidence_or_none(request_id)
        if records:
            doc["data"] = lifecycle.data_state(records)
    return _json(doc, 200)


def _evidence_or_none(request_id: str) -> list[EvidenceRecord] | None:
    """The evidence, to say what became of the data; None when it cannot be read now (the
    status the task hub holds is still the answer, without that part)."""
    try:
        return lifecycle_records(request_id)
    except Exception as exc:  # noqa: BLE001 - storage trouble must not hide the status
        log_event(
            "evidence_unreadable",
            level=logging.WARNING,
            request_id=request_id,
            reason=type(exc).__name__,
        )
        return None


@bp.route(route="exports/{requestId}/evidence", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_evidence(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """The DSR's evidence records, as stored, and whether their hash chain verifies."""
    request_id = _route_request_id(req, Role.READ)
    if isinstance(request_id, func.HttpResponse):
        return request_id
    lines = composition.evidence_log().read(canonical_request_id(request_id))
    if not lines:
        return _problem(404, "Unknown DSR", f"no evidence for requestId {request_id}", "not-found")
    return _json(evidence_document(request_id, lines), 200)


@bp.route(route="exports/{requestId}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_dsr(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Ask the orchestration to stop; it revokes the SAS and ends ``cancelled``."""
    caller = _authorized(req, Role.MANAGE)
    if isinstance(caller, func.HttpResponse):
        return caller
    request_id = _valid_route_id(req)
    if isinstance(request_id, func.HttpResponse):
        return request_id
    refused = _refuse_body(req)
    if refused is not None:
        return refused
    try:
        event = _cancel_event(decode_body(req.get_body() or b""))
    except InvalidRequest as exc:
        named = {error.pointer for error in exc.errors}
        detail = "a reason is required" if named == {"/reason"} else "a field is invalid"
        return _problem(400, "Invalid request", detail, "invalid-request", exc)
    existing = await find_dsr(client, request_id)
    if existing is None:
        return _problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")
    now = composition.now()
    doc = document(existing, now)
    if _finished(existing, doc):
        return _problem(409, "DSR already finished", f"the DSR is {doc['phase']}", "conflict")
    try:
        await client.raise_event(existing.instance_id, CANCEL_EVENT, event)
    except Exception as exc:  # the SDK raises a bare Exception
        if "is gone" in str(exc):
            return _problem(409, "DSR already finished", "the DSR has just ended", "conflict")
        if "No instance" in str(exc):
            return _problem(404, "Unknown DSR", f"no DSR with requestId {request_id}", "not-found")
        raise
    # The reason is free text from a ticket: only its code and hash go on, never to the log.
    log_event(
        "dsr_cancel_requested",
        request_id=existing.instance_id,
        phase=doc["phase"],
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    return _json(doc, 202, location=f"/api/exports/{existing.instance_id}")


@bp.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 description of these endpoints (function key like the rest)."""
    return func.HttpResponse(
        OPENAPI_PATH.read_bytes(), status_code=200, mimetype="application/json"
    )


def _cancel_event(payload: object) -> dict[str, str]:
    """The cancel event's data: the reason's code and hash. The words stay in the ticket (the
    status shows the code and the hash to every ``DSR.Read`` caller, never the text)."""
    errors: list[FieldError] = []
    try:
        reason = _reason(payload)
    except InvalidRequest as exc:
        errors += exc.errors
        reason = ""
    code = payload.get("reasonCode", "other") if isinstance(payload, dict) else "other"
    if not isinstance(code, str) or code not in CANCEL_REASON_CODES:
        choices = ", ".join(sorted(CANCEL_REASON_CODES))
        errors.append(FieldError("/reasonCode", f"must be one of {choices}"))
    if errors:
        raise InvalidRequest(errors)
    return cancel_event(reason, str(code))


class _ListQuery:
    """The list endpoint's query string, validated."""

    def __init__(
        self, phase: str | None, overdue: bool | None, top: int, after: tuple[str, str] | None
    ) -> None:
        self.phase, self.overdue, self.top, self.after = phase, overdue, top, after

    @classmethod
    def parse(cls, params: Any) -> _ListQuery:
        errors: list[FieldError] = []
        phase = params.get("phase") or None
        if phase is not None and phase not in {p.value for p in Phase}:
            errors.append(
                FieldError("/phase", "must be one of " + ", ".join(p.value for p in Phase))
            )
        overdue_raw = (params.get("overdue") or "").lower()
        overdue = {"true": True, "false": False, "": None}.get(overdue_raw)
        if overdue_raw not in {"true", "false", ""}:
            errors.append(FieldError("/overdue", "must be true or false"))
        top = DEFAULT_PAGE
        top_raw = params.get("top")
        if top_raw is not None:
            if top_raw.isascii() and top_raw.isdigit() and 1 <= int(top_raw) <= MAX_PAGE:
                top = int(top_raw)
            else:
                errors.append(FieldError("/top", f"must be a whole number from 1 to {MAX_PAGE}"))
        after = None
        token = params.get("continuationToken")
        if token:
            try:
                after = _untoken(token)
            except ValueError:
                errors.append(FieldError("/continuationToken", "is not a token this API issued"))
        if errors:
            raise InvalidRequest(errors)
        return cls(phase, overdue, top, after)


def _runtime_filter(phase: str) -> list[str]:
    """Narrow the task hub query: the orchestrator ends every DSR itself (Completed), so a
    terminal phase lives in a finished instance and any other phase in a live one."""
    names: tuple[str, ...] = ("Completed", "Failed", "Terminated", "Canceled")
    if Phase(phase) not in TERMINAL_PHASES:
        names = tuple(LIVE_STATES)
    return sorted(names)


def _token(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _untoken(token: str) -> tuple[str, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError("bad token") from None
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw)):
        raise ValueError("bad token")
    return (raw[0], raw[1])


def _finished(status: df.DurableOrchestrationStatus, doc: dict[str, Any]) -> bool:
    return (
        not is_live(status) or doc["phase"] in TERMINAL_PHASES or doc["phase"] == Phase.FINALIZING
    )
