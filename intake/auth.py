"""Route by route: who is calling, and may they?

Every route of the HTTP API names the app role it needs; :func:`caller_or_refusal` answers with
the authenticated caller, or with the refusal to send (401 when there is no identity the app
accepts, 403 when the caller lacks the role), as RFC 9457 problems. Refusals are logged with the
caller's pseudonymous id and the role, never with the request's content.
"""

from __future__ import annotations

import logging
from typing import Final

import azure.functions as func

from dsr_export.domain import problems
from dsr_export.domain.callers import (
    Caller,
    NotAuthenticated,
    Role,
    from_function_key,
    from_principal,
)
from dsr_export.domain.logs import log_event
from dsr_export.settings import auth_settings

PRINCIPAL_HEADER: Final = "x-ms-client-principal"


def caller_or_refusal(req: func.HttpRequest, role: Role) -> Caller | func.HttpResponse:
    """The caller if it holds ``role``; otherwise the 401 or 403 response to send."""
    settings = auth_settings()
    principal = req.headers.get(PRINCIPAL_HEADER) if settings.platform_auth else None
    try:
        if principal:
            caller = from_principal(principal)
        else:
            key = req.headers.get("x-functions-key") or req.params.get("code")
            if not key:
                raise NotAuthenticated("no Entra token and no function key")
            caller = from_function_key(key, settings.function_key_roles)
    except NotAuthenticated as exc:
        log_event("access_denied", level=logging.WARNING, reason="unauthenticated", role=role)
        return _refusal(401, "Not authenticated", str(exc), "unauthenticated")
    if not caller.may(role):
        log_event(
            "access_denied",
            level=logging.WARNING,
            reason="missing_role",
            role=role,
            caller_kind=caller.kind,
            caller_id=caller.id,
        )
        return _refusal(
            403, "Forbidden", f"the caller lacks the app role {role.value}", "forbidden"
        )
    return caller


def _refusal(status: int, title: str, detail: str, slug: str) -> func.HttpResponse:
    body = problems.problem(status, title, detail, slug=slug)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return func.HttpResponse(
        problems.dumps(body), status_code=status, mimetype=problems.CONTENT_TYPE, headers=headers
    )
