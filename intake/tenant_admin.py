"""The tenant registry's use cases: list, add, read, change a tenant, and its consent link
(the routes are in :mod:`intake.tenants_api`; each needs ``DSR.Admin``).

Each takes the registry, the caller and its typed inputs and returns a
:class:`~intake.verdicts.Done` or refuses (:class:`~intake.verdicts.Refused`): a body at fault
names each field (``/tenantId``, ``/callbackSecretRef``...), an unknown tenant is a 404, a
second add or a change on a stale version (``If-Match``) a 409. A tenant the caller is not
bound to is answered as unknown (404, never 403: no existence leak), lists hold only the
caller's tenants, and only a caller bound to every tenant may add one. Every change is
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


def list_tenants(registry: TenantRegistry, caller: Caller) -> Done:
    """The tenants the caller is bound to (every one, for an operator bound to all)."""
    found = [r for r in registry.list() if caller.reaches(r.tenant.tenant_id)]
    return Done({"tenants": [r.to_json() for r in found], "count": len(found)})


def add_tenant(
    registry: TenantRegistry, caller: Caller, payload: dict[str, Any], now: datetime
) -> Done:
    """Register a tenant: only a caller bound to every tenant may (403 otherwise)."""
    refusal = operators_only(caller, "add a tenant")
    if refusal is not None:
        raise Refused(Problem.INVALID, "not bound to every tenant", ready=refusal)
    try:
        tenant = tenants.parse_tenant(payload)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the tenant is not valid", "Invalid tenant") from None
    try:
        added = registry.add(tenant, caller.to_dict(), now)
    except tenants.TenantExists:
        raise Refused.conflict(
            f"tenant {tenant.tenant_id} is registered already: change it with PATCH",
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
) -> Done:
    """A JSON merge patch of the tenant, conditional on ``If-Match`` when the caller sends it."""
    if not caller.reaches(tenant_id):
        raise _unknown(tenant_id)
    try:
        changed = registry.update(
            tenant_id,
            lambda tenant: tenants.apply_patch(tenant, patch),
            caller.to_dict(),
            now,
            if_match=if_match,
        )
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the change is not valid", "Invalid tenant") from None
    except tenants.TenantUnknown:
        raise _unknown(tenant_id) from None
    except tenants.VersionMismatch:
        raise Refused.conflict(
            f"tenant {tenant_id} changed since the version in If-Match: read it again",
            "Tenant changed",
        ) from None
    return registered(changed)


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
