"""Which tenant a DSR belongs to, as the intake and the DSR routes decide it (issue 21).

With ``TENANCY=single`` there is one tenant and nothing here changes a thing: the DSR id is
the canonical request id, every caller reaches every DSR.

With ``TENANCY=multi`` a DSR belongs to one registered tenant. A submission names it
(``tenantId``) or the caller's scope implies it (a caller bound to one tenant only); the
tenant must be registered and within the caller's reach. Every DSR route resolves the DSR's
tenant from its id (``{tenant key}:{requestId}``, :mod:`dsr_export.domain.dsr_keys`), or
from the ticket's request id and the tenant the caller names (``?tenantId=``) or is bound
to, and answers a caller that does not reach it exactly as it answers for a DSR that does
not exist: 404, never 403, so that nothing of one tenant is visible to another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import azure.functions as func

from dsr_export import composition
from dsr_export.domain import dsr_keys
from dsr_export.domain.callers import Caller
from dsr_export.domain.logs import name_tenant
from dsr_export.domain.request import FieldError, InvalidRequest, validate_request_id
from dsr_export.domain.tenants import TENANT_ID, Tenant
from dsr_export.settings import tenancy_settings
from intake.verdicts import Problem, Refused

#: The title of the 404 for a tenant that is not served here, or not within reach.
UNKNOWN_TENANT: Final = "Unknown tenant"
_NAME_ONE: Final = "is required: the tenant the DSR belongs to (a GUID)"


class TenantOutOfReach(LookupError):
    """The tenant is not registered, or not within the caller's reach: one answer for both."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(tenant_id)
        self.tenant_id = tenant_id


def multi() -> bool:
    """Whether this deployment serves many tenants (``TENANCY=multi``)."""
    return tenancy_settings().multi


def submission_tenant(payload: object, caller: Caller) -> Tenant | None:
    """The registered tenant a submission belongs to; None with ``TENANCY=single``.

    Raises :class:`InvalidRequest` naming ``/tenantId`` when none is named and the caller's
    binding implies none (or the value is no tenant id), and :class:`TenantOutOfReach` for a
    tenant not registered, retired, or outside the caller's reach: one answer for all.
    """
    if not multi():
        return None
    named = payload.get("tenantId") if isinstance(payload, Mapping) else None
    raw = caller.scope.sole if named is None else named
    if raw is None:
        raise InvalidRequest([FieldError("/tenantId", _NAME_ONE)])
    return registered(_tenant_id(raw), caller, new_dsr=True)


def registered(tenant_id: str, caller: Caller, *, new_dsr: bool = False) -> Tenant:
    """The registry's entry of ``tenant_id``, when ``caller`` reaches it; for a ``new_dsr``,
    only while the tenant takes DSRs (a retired tenant is answered as an unknown one, while
    its DSRs stay readable as its record)."""
    if not caller.reaches(tenant_id):
        raise TenantOutOfReach(tenant_id)
    found = composition.tenant_registry().get(tenant_id)
    if found is None or (new_dsr and not found.tenant.accepts_dsrs):
        raise TenantOutOfReach(tenant_id)
    name_tenant(found.tenant.tenant_id)
    return found.tenant


def _tenant_id(raw: object) -> str:
    if isinstance(raw, str) and TENANT_ID.fullmatch(raw.strip().lower()):
        return raw.strip().lower()
    raise InvalidRequest([FieldError("/tenantId", _NAME_ONE)])


def unknown_tenant(tenant_id: str) -> Refused:
    """The one 404 for a tenant that is not registered and for one out of reach."""
    return Refused(Problem.NOT_FOUND, f"no tenant {tenant_id} is served here", title=UNKNOWN_TENANT)


def route_dsr_id(
    raw: str | None,
    caller: Caller,
    tenant_hint: str | None = None,
    *,
    missing: Callable[[str], Refused] = Refused.unknown,
) -> str:
    """The DSR id a route's ``{requestId}`` names, for ``caller``.

    ``single``: the request id, validated, as every route always took it. ``multi``: the DSR
    id, ``{tenant key}:{requestId}``, given whole (its key a registered tenant's), or made
    from the request id and the tenant the caller names (``tenant_hint``, the ``tenantId``
    query parameter) or is bound to. A DSR of a tenant that is not registered, or that the
    caller does not reach, or other than the one it names, is answered with ``missing(id)``:
    the route's own answer for a DSR that does not exist.
    """
    if not multi():
        return _valid(raw)
    parts = dsr_keys.split(raw or "")
    owner = composition.tenant_of(str(parts)) if parts is not None else None
    if parts is not None and owner is not None:  # a registered tenant's DSR id, whole
        if tenant_hint and _route_tenant(tenant_hint) != owner.tenant_id:
            raise missing(str(parts))
        return _reached(str(parts), owner.tenant_id, caller, missing)
    tenant = tenant_hint if tenant_hint else caller.scope.sole
    if tenant is not None:
        tenant_id = _route_tenant(tenant)
        return _reached(dsr_keys.dsr_id(tenant_id, _valid(raw)), tenant_id, caller, missing)
    if parts is not None:  # the id of a tenant that is not registered (any more)
        raise missing(str(parts))
    _valid(raw)
    error = FieldError("/tenantId", "is required: name the tenant, or give the DSR's id")
    raise Refused(Problem.INVALID, str(error.detail), [error], "Tenant required")


def _route_tenant(raw: str) -> str:
    try:
        return _tenant_id(raw)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "tenantId is not a tenant id", "Invalid tenant id") from None


def _reached(dsr_id: str, tenant_id: str, caller: Caller, missing: Callable[[str], Refused]) -> str:
    """``dsr_id`` when its tenant is registered and within ``caller``'s reach, else the
    route's 404 for a DSR that does not exist."""
    try:
        registered(tenant_id, caller)
    except TenantOutOfReach:
        raise missing(dsr_id) from None
    return dsr_id


def _valid(raw: str | None) -> str:
    try:
        return validate_request_id(raw)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, str(exc), "Invalid request id") from None


def dsr_of(
    req: func.HttpRequest, caller: Caller, *, missing: Callable[[str], Refused] = Refused.unknown
) -> str:
    """The DSR id a route's ``{requestId}`` (and ``?tenantId=``) names, within ``caller``'s
    reach (:func:`route_dsr_id`): what every DSR route acts on."""
    hint = req.params.get("tenantId") or None
    return route_dsr_id(req.route_params.get("requestId"), caller, hint, missing=missing)


def listed_tenants(caller: Caller, tenant_hint: str | None) -> frozenset[str] | None:
    """The tenant keys of the DSRs the list shows ``caller``: None for every DSR (``single``,
    or a caller reaching every tenant and naming none); else those of the tenants it reaches,
    narrowed to ``tenant_hint`` (a tenant it does not reach lists nothing, as an unknown one)."""
    if not multi():
        return None
    if tenant_hint is not None:
        tenant_id = _route_tenant(tenant_hint)
        return frozenset({dsr_keys.tenant_key(tenant_id)} if caller.reaches(tenant_id) else ())
    reached = caller.scope.tenants
    return None if reached is None else frozenset(dsr_keys.tenant_key(t) for t in reached)
