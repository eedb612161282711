"""Route by route: who is calling, and may they?

Every route of the HTTP API names the app role it needs; :func:`caller_or_refusal` answers with
the authenticated caller, or with the refusal to send (401 when there is no identity the app
accepts, 403 when the caller lacks the role, 503 when the tenant's signing keys cannot be had),
as RFC 9457 problems. With ``TENANCY=multi`` the caller also carries its tenant scope, from the
registry's bindings (:mod:`dsr_export.domain.bindings`): where it may act. Refusals are logged
with the caller's pseudonymous id and the role, never with the request's content.

Who the caller is comes from one of two things, never from a header another layer wrote:

- ``Authorization: Bearer <Entra access token>``, judged by the app itself
  (``dsr_export.adapters.entra``, built on first use). A token that fails is a 401, never a
  fall back to the function key sent beside it.
- Otherwise the function key the Functions host checked: the ``x-functions-key`` header when it
  is sent, else the ``code`` query parameter. ``code`` given twice is refused: the host lets the
  first one in, while the request the app sees joins both (``KEY,x``), so a key holder could
  otherwise be recorded under a fingerprint of no key at all.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from dsr_export import composition
from dsr_export.domain import problems
from dsr_export.domain.bindings import scope_for
from dsr_export.domain.callers import (
    Caller,
    KeysUnavailable,
    NotAuthenticated,
    Role,
    TokenRefused,
    from_function_key,
)
from dsr_export.domain.logs import log_event
from dsr_export.settings import AuthSettings, auth_settings, tenancy_settings

KEY_HEADER: Final = "x-functions-key"
KEY_QUERY: Final = "code"
#: Seconds a caller should wait when the signing keys could not be fetched.
KEYS_RETRY_AFTER: Final = "60"


def caller_or_refusal(req: func.HttpRequest, role: Role) -> Caller | func.HttpResponse:
    """The caller if it holds ``role``, with its tenant scope; otherwise the 401, 403 or 503
    response to send."""
    settings = auth_settings()
    try:
        authorization = req.headers.get("authorization")
        if authorization is not None:
            caller = _token_caller(authorization, settings)
        else:
            caller = from_function_key(_presented_key(req), settings.function_key_roles)
    except TokenRefused as exc:
        log_event("access_denied", level=logging.WARNING, reason=exc.reason, role=role)
        return _refusal(401, "Not authenticated", str(exc), "unauthenticated", invalid_token=True)
    except NotAuthenticated as exc:
        log_event("access_denied", level=logging.WARNING, reason="unauthenticated", role=role)
        return _refusal(401, "Not authenticated", str(exc), "unauthenticated")
    except KeysUnavailable:
        log_event("access_denied", level=logging.WARNING, reason="keys_unavailable", role=role)
        return _refusal(
            503,
            "Authentication unavailable",
            "the tenant's signing keys cannot be fetched now; try again later",
            "keys-unavailable",
        )
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
    return _scoped(caller, role)


def _scoped(caller: Caller, role: Role) -> Caller | func.HttpResponse:
    """``caller`` with the tenants it is bound to (``TENANCY=multi``; every tenant in
    ``single``). The bindings are read on every request, so a removed binding binds nobody from
    the next request on; if they cannot be read, the caller is refused (503), never let in."""
    tenancy = tenancy_settings()
    if not tenancy.multi:
        return caller
    from azure.core.exceptions import AzureError

    try:
        bound = [b.binding for b in composition.tenant_registry().bindings.all()]
    # RuntimeError: no host storage setting; ValueError, KeyError: a document someone edited
    # into something the app does not read (refused, never read as "no binding").
    except (AzureError, RuntimeError, ValueError, KeyError) as exc:
        log_event(
            "access_denied",
            level=logging.WARNING,
            reason=f"bindings_unavailable:{type(exc).__name__}",
            role=role,
        )
        return _refusal(
            503,
            "Authorisation unavailable",
            "the callers' tenant bindings cannot be read now; try again later",
            "bindings-unavailable",
        )
    return dataclasses.replace(caller, scope=scope_for(caller, bound, tenancy.operators))


def operators_only(caller: Caller, what: str) -> func.HttpResponse | None:
    """A 403 unless ``caller`` is bound to every tenant (``what``: what it may not do)."""
    if caller.scope.tenants is None:
        return None
    log_event(
        "access_denied",
        level=logging.WARNING,
        reason="not_all_tenants",
        caller_kind=caller.kind,
        caller_id=caller.id,
    )
    return _refusal(
        403, "Forbidden", f"only a caller bound to every tenant may {what}", "forbidden"
    )


def _token_caller(authorization: str, settings: AuthSettings) -> Caller:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("malformed", "the Authorization header must be 'Bearer <token>'")
    if settings.entra is None:
        raise TokenRefused("not_configured", "this deployment accepts no Entra ID tokens")
    return composition.token_validator().caller(token.strip())


def _presented_key(req: func.HttpRequest) -> str:
    """The key the Functions host let in: the header whenever it is sent, else ``code``."""
    header: str | None = req.headers.get(KEY_HEADER)
    if header is not None:
        if not header:
            raise NotAuthenticated("no Entra token and no function key")
        return header
    query = urlsplit(str(req.url)).query
    codes = [v for n, v in parse_qsl(query, keep_blank_values=True) if n.lower() == KEY_QUERY]
    if len(codes) > 1:
        raise NotAuthenticated("the code query parameter must be given once")
    if not codes or not codes[0]:
        raise NotAuthenticated("no Entra token and no function key")
    return codes[0]


def _refusal(
    status: int, title: str, detail: str, slug: str, *, invalid_token: bool = False
) -> func.HttpResponse:
    body = problems.problem(status, title, detail, slug=slug)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    if status == 503:
        headers["Retry-After"] = KEYS_RETRY_AFTER
    return func.HttpResponse(
        problems.dumps(body), status_code=status, mimetype=problems.CONTENT_TYPE, headers=headers
    )
