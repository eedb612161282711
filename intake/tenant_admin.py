"""The tenant registry's use cases: list, add, read, change, retire and reinstate a tenant, and
its consent link (the routes are in :mod:`intake.tenants_api`; each needs ``DSR.Admin``).

Each takes the registry, the caller and its typed inputs and returns a
:class:`~intake.verdicts.Done` or refuses (:class:`~intake.verdicts.Refused`): a body at fault
names each field (``/tenantId``, ``/callbackSecretRef``...), an unknown tenant is a 404, a
second add or a change on a stale version (``If-Match``) a 409. A tenant the caller is not
bound to is answered as unknown (404, never 403: no existence leak), lists hold only the
caller's tenants, and only a caller bound to every tenant may add, retire or reinstate one.
A retired tenant is a record: listed only when asked for (``state``), never changed by a
PATCH (409), made active again by reinstating it. Every change is
recorded in the registry's change log by the registry itself (who, when, which fields; never a
value).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from dsr_export.domain import tenants
from dsr_export.domain.callers import Caller
from dsr_export.domain.request import FieldError, InvalidRequest
from dsr_export.settings import TenancySettings
from intake.auth import operators_only
from intake.verdicts import Done, Problem, Refused

if TYPE_CHECKING:
    # The storage SDK stays off the cold-start path: the registry is built on first use.
    from dsr_export.adapters.tenant_registry import TenantRegistry

UNKNOWN_TENANT: Final = "Unknown tenant"


def location(tenant_id: str) -> str:
    return f"/api/tenants/{tenant_id}"


def registered(found: tenants.Registered, status: int = 200) -> Done:
    return Done(
        found.to_json(),
        status=status,
        location=location(found.tenant.tenant_id) if status == 201 else None,
        etag=found.etag,
    )


def valid_id(raw: str | None) -> str:
    """The route's ``{tenantId}``, a GUID (any letter case)."""
    value = (raw or "").strip().lower()
    if not tenants.TENANT_ID.fullmatch(value):
        error = FieldError("/tenantId", "must be the tenant's id, a GUID")
        raise Refused(Problem.INVALID, "invalid tenant id", [error], "Invalid tenant id")
    return value


#: The ``state`` filter of the list: which tenants it shows (``active`` unless asked).
STATES: Final = ("active", "retired", "all")


def valid_state(raw: str | None) -> str:
    """The list's ``state`` query parameter (default ``active``)."""
    value = (raw or "active").strip().lower()
    if value not in STATES:
        error = FieldError("/state", f"must be one of {', '.join(STATES)}")
        raise Refused(Problem.INVALID, "invalid state filter", [error], "Invalid state")
    return value


def list_tenants(registry: TenantRegistry, caller: Caller, state: str = "active") -> Done:
    """The tenants the caller is bound to (every one, for an operator bound to all), in the
    ``state`` asked for: the active ones by default, a retired one only when asked."""
    found = [
        r
        for r in registry.list()
        if caller.reaches(r.tenant.tenant_id) and state in ("all", r.tenant.state.value)
    ]
    return Done({"tenants": [r.to_json() for r in found], "count": len(found)})


def add_tenant(
    registry: TenantRegistry, caller: Caller, payload: dict[str, Any], now: datetime
) -> Done:
    """Register a tenant: only a caller bound to every tenant may (403 otherwise)."""
    _operator(caller, "add a tenant")
    try:
        tenant = tenants.parse_tenant(payload)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the tenant is not valid", "Invalid tenant") from None
    try:
        added = registry.add(tenant, caller.to_dict(), now)
    except tenants.TenantExists:
        raise Refused.conflict(
            f"tenant {tenant.tenant_id} is registered already (a retired one is listed with "
            "?state=all and reinstated): change it with PATCH",
            "Tenant exists",
        ) from None
    return registered(added, 201)


def get_tenant(registry: TenantRegistry, caller: Caller, tenant_id: str) -> Done:
    found = registry.get(tenant_id) if caller.reaches(tenant_id) else None
    if found is None:
        raise _unknown(tenant_id)
    return registered(found)


def update_tenant(
    registry: TenantRegistry,
    caller: Caller,
    tenant_id: str,
    patch: dict[str, Any],
    now: datetime,
    if_match: str | None,
    dsrs_held: int = 0,
) -> Done:
    """A JSON merge patch of the tenant, conditional on ``If-Match`` when the caller sends it.
    ``evidencePrefix`` never changes (400), ``exportsAccount`` not while ``dsrs_held`` of its
    DSRs are still in the task hub (409; :func:`dsr_export.domain.tenants.apply_patch`)."""
    if not caller.reaches(tenant_id):
        raise _unknown(tenant_id)
    try:
        changed = registry.update(
            tenant_id,
            lambda tenant: tenants.apply_patch(tenant, patch, dsrs_held),
            caller.to_dict(),
            now,
            if_match=if_match,
        )
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the change is not valid", "Invalid tenant") from None
    except tenants.TenantUnknown:
        raise _unknown(tenant_id) from None
    except tenants.VersionMismatch:
        raise _changed(tenant_id) from None
    except tenants.AccountInUse as exc:
        raise Refused.conflict(
            f"tenant {tenant_id} has {exc.held} DSR(s) whose containers may be in its current "
            "exportsAccount (in flight, or ended with their history kept until retention "
            "purges it): each step finds a DSR's containers in the account the registry names, "
            "so the account changes only once none is left (dsrctl ls --tenant "
            f"{tenant_id}); see docs/msp.md, data residency",
            "Exports account in use",
        ) from None
    except tenants.TenantRetired:
        raise Refused.conflict(
            f"tenant {tenant_id} is retired and its record stays as it was: reinstate it first "
            f"(POST /api/tenants/{tenant_id}/reinstate, dsrctl tenants reinstate)",
            "Tenant retired",
        ) from None
    return registered(changed)


def retire_tenant(
    registry: TenantRegistry,
    caller: Caller,
    tenant_id: str,
    payload: dict[str, Any],
    now: datetime,
    in_flight: int,
    if_match: str | None = None,
) -> Done:
    """Retire a tenant whose customer left (only a caller bound to every tenant may).

    Refused (409) while ``in_flight`` of its DSRs have not ended, unless the body says
    ``{"force": true}`` (then recorded: ``forced``, ``inFlight``). The tenant becomes a record:
    it takes no new DSR, the deep health check and the default list leave it out; then every
    binding naming it is changed not to (each change logged, ``cause: retired``). A tenant
    retired already is answered as it is, its bindings swept again (a retirement cut short
    between the two writes is completed by retiring again)."""
    _reachable(caller, tenant_id)
    _operator(caller, "retire a tenant")
    force = _force(payload)
    current = registry.get(tenant_id)
    if current is None:
        raise _unknown(tenant_id)
    extra: dict[str, Any] | None = None
    if current.tenant.accepts_dsrs and in_flight:
        if not force:
            raise Refused.conflict(
                f"tenant {tenant_id} has {in_flight} DSR(s) in flight: let them end or cancel "
                f"them (dsrctl ls --tenant {tenant_id}; dsrctl cancel), erase what must be "
                'erased, then retire it; or retire it anyway with {"force": true} '
                "(dsrctl tenants retire --force)",
                "DSRs in flight",
            )
        extra = {"forced": True, "inFlight": in_flight}
    try:
        retired = registry.retire(tenant_id, caller.to_dict(), now, if_match=if_match, extra=extra)
    except tenants.TenantUnknown:
        raise _unknown(tenant_id) from None
    except tenants.VersionMismatch:
        raise _changed(tenant_id) from None
    swept = registry.bindings.drop_tenant(tenant_id, caller.to_dict(), now)
    done = registered(retired)
    done.body["bindingsChanged"] = swept
    return done


def reinstate_tenant(
    registry: TenantRegistry,
    caller: Caller,
    tenant_id: str,
    now: datetime,
    if_match: str | None = None,
) -> Done:
    """Make a retired tenant active again (only a caller bound to every tenant may). Its
    bindings are not given back: bind its callers again; and if its administrator revoked the
    consent, send the consent link again. An active tenant is answered as it is."""
    _reachable(caller, tenant_id)
    _operator(caller, "reinstate a tenant")
    try:
        reinstated = registry.reinstate(tenant_id, caller.to_dict(), now, if_match=if_match)
    except tenants.TenantUnknown:
        raise _unknown(tenant_id) from None
    except tenants.VersionMismatch:
        raise _changed(tenant_id) from None
    return registered(reinstated)


def _reachable(caller: Caller, tenant_id: str) -> None:
    """A tenant out of the caller's reach is answered as unknown (404), before the operator
    check: a 403 there would say no more, but every route answers another tenant's ids alike."""
    if not caller.reaches(tenant_id):
        raise _unknown(tenant_id)


def _operator(caller: Caller, what: str) -> None:
    refusal = operators_only(caller, what)
    if refusal is not None:
        raise Refused(Problem.INVALID, "not bound to every tenant", ready=refusal)


def _force(payload: dict[str, Any]) -> bool:
    unknown = sorted(set(payload) - {"force"})
    errors = [FieldError(f"/{name}", "is not a field of a retirement") for name in unknown]
    force = payload.get("force", False)
    if not isinstance(force, bool):
        errors.append(FieldError("/force", "must be true or false"))
    if errors:
        raise Refused(Problem.INVALID, "the retirement is not valid", errors, "Invalid retirement")
    return bool(force)


def _changed(tenant_id: str) -> Refused:
    return Refused.conflict(
        f"tenant {tenant_id} changed since the version in If-Match: read it again",
        "Tenant changed",
    )


def consent_link(
    registry: TenantRegistry,
    tenancy: TenancySettings,
    caller: Caller,
    tenant_id: str,
    redirect: str | None,
) -> Done:
    """The admin-consent URL of the multi-tenant app in the tenant's cloud."""
    if not tenancy.multi or tenancy.client_id is None:
        raise Refused.conflict(
            "this deployment serves one tenant (TENANCY=single): there is no multi-tenant app "
            "to consent to",
            "Single tenancy",
        )
    if redirect is not None and not _https_url(redirect):
        error = FieldError("/redirectUri", "must be an https URL registered on the app")
        raise Refused(Problem.INVALID, "invalid redirectUri", [error], "Invalid redirect")
    found = registry.get(tenant_id) if caller.reaches(tenant_id) else None
    if found is None:
        raise _unknown(tenant_id)
    if not found.tenant.accepts_dsrs:
        raise Refused.conflict(
            f"tenant {tenant_id} is retired: reinstate it before asking for its consent again",
            "Tenant retired",
        )
    link = tenants.consent_link(found.tenant, tenancy.client_id, redirect)
    return Done(
        {
            "tenantId": tenant_id,
            "cloud": found.tenant.cloud,
            "clientId": tenancy.client_id,
            "permissions": list(tenants.GRAPH_PERMISSIONS),
            "consentLink": link,
        }
    )


def _https_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username


def _unknown(tenant_id: str) -> Refused:
    return Refused(Problem.NOT_FOUND, f"no tenant {tenant_id} is registered", title=UNKNOWN_TENANT)
