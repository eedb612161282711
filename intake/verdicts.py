"""What a use case answers, and the one decorator that turns it into an HTTP response.

A use case (:mod:`intake.service`, :mod:`intake.aftercare`) takes typed inputs and the caller
and returns :class:`Done`, or refuses with :class:`Refused` (a problem kind and the fields at
fault), returned or raised from any depth. Routes parse, call and return; :func:`answers`
renders: RFC 9457 problem documents, status codes, ``Location``/``Retry-After`` and
``Cache-Control`` headers. One place, so no route threads a response through its code.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.request import (
    FieldError,
    InvalidRequest,
    decode_body,
    validate_request_id,
)
from dsr_export.settings import SettingsError
from intake.auth import caller_or_refusal
from intake.responses import json_answer, misconfigured, problem, reason, refuse_body


class Problem(enum.Enum):
    """The kinds of refusal: (status code, the problem type's slug)."""

    INVALID = (400, "invalid-request")
    NOT_FOUND = (404, "not-found")
    CONFLICT = (409, "conflict")
    TOO_LARGE = (413, "too-large")
    MEDIA_TYPE = (415, "media-type")
    MISCONFIGURED = (503, "misconfigured")
    UNAVAILABLE = (503, "unavailable")


#: The title a problem kind takes when the use case names none.
TITLES = {
    Problem.INVALID: "Invalid request",
    Problem.NOT_FOUND: "Unknown DSR",
    Problem.CONFLICT: "DSR in the wrong state",
}


@dataclass(frozen=True)
class Done:
    """A use case done: its JSON answer, status and headers."""

    body: dict[str, Any]
    status: int = 200
    #: The DSR's status URL (``Location``; ``Retry-After`` too while the DSR runs).
    location: str | None = None
    #: The answer holds a secret link: never cached.
    no_store: bool = False
    #: The version of what the answer shows (``ETag``), for a conditional write after it.
    etag: str | None = None

    def response(self) -> func.HttpResponse:
        answer = json_answer(self.body, self.status, location=self.location)
        if self.no_store:
            answer.headers["Cache-Control"] = "no-store"
        if self.etag:
            answer.headers["ETag"] = self.etag
        return answer


@dataclass
class Refused(Exception):
    """A use case refused: the problem kind, what to tell the caller and the fields at fault.

    ``ready`` is a refusal built elsewhere (the authentication's, with its own headers).
    """

    kind: Problem
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    title: str | None = None
    ready: func.HttpResponse | None = None

    @classmethod
    def invalid(cls, exc: InvalidRequest, detail: str, title: str | None = None) -> Refused:
        return cls(Problem.INVALID, detail, list(exc.errors), title)

    @classmethod
    def conflict(cls, detail: str, title: str | None = None) -> Refused:
        return cls(Problem.CONFLICT, detail, title=title)

    @classmethod
    def unknown(cls, request_id: str, what: str = "DSR") -> Refused:
        return cls(Problem.NOT_FOUND, f"no {what} with requestId {request_id}")

    def response(self) -> func.HttpResponse:
        if self.ready is not None:
            return self.ready
        status, slug = self.kind.value
        title = self.title or TITLES.get(self.kind, "Request refused")
        return problem(status, title, self.detail, slug, self.errors)


Verdict = Done | Refused


def answers(
    route: Callable[..., Awaitable[Verdict]],
) -> Callable[..., Awaitable[func.HttpResponse]]:
    """The route's verdict (returned, or a :class:`Refused` raised) as its response; a setting
    found invalid on the way is a 503 naming it."""

    @functools.wraps(route)
    async def respond(*args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            verdict = await route(*args, **kwargs)
        except Refused as refused:
            verdict = refused
        except SettingsError as exc:
            return misconfigured(exc)
        return verdict.response()

    # The host reads the binding's parameters and return type from the signature.
    respond.__annotations__ = {**route.__annotations__, "return": "func.HttpResponse"}
    respond.__signature__ = inspect.signature(route).replace(  # type: ignore[attr-defined]
        return_annotation="func.HttpResponse"
    )
    return respond


# -- what every route parses ------------------------------------------------------------------


def caller_of(req: func.HttpRequest, role: Role) -> Caller:
    """The caller, if it holds ``role``; refused (401, 403 or 503) otherwise."""
    found = caller_or_refusal(req, role)
    if isinstance(found, func.HttpResponse):
        raise Refused(Problem.INVALID, "refused by authentication", ready=found)
    return found


def route_id(req: func.HttpRequest) -> str:
    """The route's ``{requestId}``, valid."""
    try:
        return validate_request_id(req.route_params.get("requestId"))
    except InvalidRequest as exc:
        raise Refused.invalid(exc, str(exc), "Invalid request id") from None


def json_body(req: func.HttpRequest) -> object:
    """The body's JSON, of the size and media type every route takes."""
    refused = refuse_body(req)
    if refused is not None:
        raise Refused(Problem.INVALID, "body refused", ready=refused)
    try:
        return decode_body(req.get_body() or b"")
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the body is not valid JSON", "Malformed JSON") from None


def json_object(req: func.HttpRequest, *, optional: bool = False) -> dict[str, Any]:
    """The body, a JSON object (empty when ``optional`` and none was sent)."""
    if optional and not (req.get_body() or b"").strip():
        return {}
    payload = json_body(req)
    if not isinstance(payload, dict):
        error = FieldError("", "must be a JSON object")
        raise Refused(Problem.INVALID, "the body must be an object", [error])
    return payload


def reason_of(payload: object) -> str:
    """The ``reason`` an operator must give."""
    try:
        return reason(payload)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "a reason is required") from None
