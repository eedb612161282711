"""What every HTTP route of the app answers the same way: its refusals (RFC 9457 problems
naming each field at fault) and its JSON answers. One place, so the DSR routes and the lifecycle
routes cannot drift apart (:mod:`intake.verdicts` renders every use case's verdict with these).
"""

from __future__ import annotations

import json
from typing import Any, Final

import azure.functions as func

from dsr_export.domain import problems
from dsr_export.domain.logs import log_event
from dsr_export.domain.request import MAX_BODY_BYTES, FieldError, InvalidRequest
from dsr_export.settings import SettingsError

#: Seconds a ticketing system should wait before reading the status again.
STATUS_RETRY_AFTER: Final = "60"
MAX_REASON_LENGTH: Final = 500


def reason(payload: object) -> str:
    reason = payload.get("reason") if isinstance(payload, dict) else None
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(
            [FieldError("/reason", f"is required: a string of 1-{MAX_REASON_LENGTH} characters")]
        )
    return reason.strip()


def refuse_body(req: func.HttpRequest) -> func.HttpResponse | None:
    if len(req.get_body() or b"") > MAX_BODY_BYTES:
        return problem(
            413, "Request body too large", f"at most {MAX_BODY_BYTES} bytes", "too-large"
        )
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return problem(415, "Unsupported media type", "send application/json", "media-type")
    return None


def json_answer(
    body: dict[str, Any], status: int, *, location: str | None = None
) -> func.HttpResponse:
    headers = {}
    if location is not None:
        headers["Location"] = location
        if not body.get("terminal"):
            headers["Retry-After"] = STATUS_RETRY_AFTER
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def misconfigured(exc: SettingsError) -> func.HttpResponse:
    log_event("intake_misconfigured", setting=exc.setting)
    return problem(
        503, "Service misconfigured", f"setting {exc.setting} is invalid", "misconfigured"
    )


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: InvalidRequest | list[FieldError] | None = None,
) -> func.HttpResponse:
    listed = errors.errors if isinstance(errors, InvalidRequest) else (errors or [])
    body = problems.problem(status, title, detail, slug=slug, errors=listed)
    return func.HttpResponse(
        problems.dumps(body), status_code=status, mimetype=problems.CONTENT_TYPE
    )
