"""``GET /api/health?deep=true`` with ``TENANCY=multi``: each registered tenant's health.

A retired tenant is not checked: its customer left and revoked the consent, so its token fails
for good, and a deep check that answered 503 for it forever would hide every real fault.

For every tenant of the registry: can the app get a Graph token there (its administrator
consented, and the app's federated credential trusts this identity), does the token carry
``User.Export.All`` and ``User.Read.All``, and does the tenant's export storage (its own
account, or the shared one) let the app in. Per tenant, under ``tenants`` in the answer; each
fault named ``/tenants/{tenantId}/token|graphRoles|storage``. Kept apart from
:mod:`intake.health_api` so that the health route only calls it.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.request import FieldError
from dsr_export.settings import GraphSettings, TenancySettings
from intake.auth import caller_or_refusal


def deep(
    env: dict[str, str],
    checks: dict[str, Any],
    extra: dict[str, Any],
    req: func.HttpRequest | None = None,
) -> list[FieldError]:
    """Every registered tenant the caller reaches checked, with ``TENANCY=multi``;
    ``checks["tenants"]`` sums them up. Nothing with ``single``: the identity's own tenant is
    the deep check's already. The per-tenant part names tenants, so it is for ``DSR.Admin``
    callers only, and each sees only the tenants it is bound to (``skipped`` for others)."""
    if not TenancySettings.from_env(env).multi:
        return []
    caller = caller_or_refusal(req, Role.ADMIN) if req is not None else None
    if not isinstance(caller, Caller):
        checks["tenants"] = "skipped"
        return []
    # Imported here, not at cold start: the checks pull in the storage and identity SDKs.
    from azure.core.exceptions import AzureError

    from dsr_export.adapters import health

    try:
        registered = [
            r
            for r in composition.tenant_registry().list()
            if r.tenant.accepts_dsrs and caller.reaches(r.tenant.tenant_id)
        ]
    except (AzureError, RuntimeError) as exc:  # RuntimeError: no host storage setting
        checks["tenants"] = "failed"
        return [
            FieldError(
                "/tenants",
                f"the tenant registry cannot be read ({type(exc).__name__}): check the app's "
                "access to the host storage account (container dsr-tenants)",
            )
        ]
    credentials = composition.tenant_credentials()
    found = health.tenant_health(
        [
            (r.tenant.tenant_id, composition.export_storage_for(r.tenant.exports_account).probe)
            for r in registered
        ],
        credentials.for_tenant,
        GraphSettings.from_env(env),
    )
    checks["tenants"] = "ok" if found.ok else "failed"
    extra["tenants"] = found.results
    return found.faults
