"""The HTTP face for ticketing systems: submit, read, list and cancel DSRs; the API document.

Every route is function-level (the app's default): the host answers 401 without a key, and
each route checks the caller's app role (:mod:`intake.auth`). Client functions must be
``async`` (see the Durable notes). Status comes from our own document, never Durable's built-in
one: that embeds the system key in its URLs and echoes the orchestration input. Every refusal
the app makes is an RFC 9457 problem naming each field at fault (the host's own are bare).

The routes parse, call the use case (:mod:`intake.service`, :mod:`intake.listing`) and return
its verdict, which :func:`intake.verdicts.answers` renders.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Role
from dsr_export.domain.errors import CANCEL_REASON_CODES, cancel_event
from dsr_export.domain.request import FieldError, InvalidRequest
from dsr_export.domain.status import Phase
from intake import listing, service
from intake.responses import reason
from intake.tenancy import dsr_of, listed_tenants
from intake.verdicts import (
    Done,
    Refused,
    Verdict,
    answers,
    caller_of,
    json_body,
)

bp = df.Blueprint()

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
#: Served as it is; docs/openapi.json is a copy (a test keeps them identical). It lives next to
#: the code so it is deployed with it (.funcignore drops docs/).
OPENAPI_PATH: Final = Path(__file__).with_name("openapi.json")


@bp.route(route="exports", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers
async def submit_dsr(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Accept a DSR; the same request again answers with the DSR already under way."""
    caller = caller_of(req, Role.SUBMIT)
    payload = json_body(req)
    hub = composition.task_hub(client)
    return await service.submit(hub, caller, payload, now=composition.now())


@bp.route(route="exports", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers
async def list_dsrs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """DSRs oldest first (closest to their deadline), filtered by phase and overdue, paged by
    ``continuationToken`` (the last item of the previous page)."""
    caller = caller_of(req, Role.READ)
    try:
        query = _list_query(req.params)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "one or more parameters are invalid", "Invalid query") from None
    query = replace(query, tenant_keys=listed_tenants(caller, req.params.get("tenantId") or None))
    rows, more = await listing.page(composition.task_hub(client), query, composition.now())
    token = _token(rows[-1][0]) if more else None
    return Done({"items": [doc.to_wire() for _, doc in rows], "continuationToken": token})


@bp.route(route="exports/{requestId}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers
async def get_dsr(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """The DSR's status document (never Durable's URLs, never the input)."""
    caller = caller_of(req, Role.READ)
    return await service.status(composition.task_hub(client), dsr_of(req, caller))


@bp.route(route="exports/{requestId}/evidence", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers
async def get_evidence(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """The DSR's evidence records, as stored, and whether their hash chain verifies."""
    caller = caller_of(req, Role.READ)
    return service.evidence(dsr_of(req, caller, missing=service.no_evidence))


@bp.route(route="exports/{requestId}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@answers
async def cancel_dsr(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """Ask the orchestration to stop; it revokes the SAS and ends ``cancelled``."""
    caller = caller_of(req, Role.MANAGE)
    request_id = dsr_of(req, caller)
    payload = json_body(req)
    try:
        event = _cancel_event(payload)
    except InvalidRequest as exc:
        named = {error.pointer for error in exc.errors}
        detail = "a reason is required" if named == {"/reason"} else "a field is invalid"
        raise Refused.invalid(exc, detail) from None
    return await service.cancel(composition.task_hub(client), caller, request_id, event)


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
        given = reason(payload)
    except InvalidRequest as exc:
        errors += exc.errors
        given = ""
    code = payload.get("reasonCode", "other") if isinstance(payload, dict) else "other"
    if not isinstance(code, str) or code not in CANCEL_REASON_CODES:
        choices = ", ".join(sorted(CANCEL_REASON_CODES))
        errors.append(FieldError("/reasonCode", f"must be one of {choices}"))
    if errors:
        raise InvalidRequest(errors)
    return cancel_event(given, str(code))


# -- the list's query string ----------------------------------------------------------------------


def _list_query(params: Any) -> listing.ListQuery:
    """The list endpoint's query string, validated: every field at fault named at once."""
    errors: list[FieldError] = []

    def field(
        name: str, read: Callable[[str], Any], default: Any, problem: str, *, blank: bool = True
    ) -> Any:
        raw = params.get(name)
        if raw is None or (blank and not raw):  # blank: an empty value means not given
            return default
        try:
            return read(raw)
        except ValueError:
            errors.append(FieldError(f"/{name}", problem))
            return default

    phases = ", ".join(p.value for p in Phase)
    query = listing.ListQuery(
        phase=field("phase", lambda raw: Phase(raw).value, None, f"must be one of {phases}"),
        overdue=field("overdue", _boolean, None, "must be true or false"),
        top=field(
            "top", _top, DEFAULT_PAGE, f"must be a whole number from 1 to {MAX_PAGE}", blank=False
        ),
        after=field("continuationToken", _untoken, None, "is not a token this API issued"),
    )
    if errors:
        raise InvalidRequest(errors)
    return query


def _boolean(raw: str) -> bool:
    flags = {"true": True, "false": False}
    if raw.lower() not in flags:
        raise ValueError(raw)
    return flags[raw.lower()]


def _top(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE):
        raise ValueError(raw)
    return int(raw)


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
