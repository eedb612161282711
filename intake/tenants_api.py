"""The tenant registry over HTTP (``TENANCY=multi``; docs/deploy.md, "Many tenants"):
``GET/POST /api/tenants``, ``GET/PATCH /api/tenants/{tenantId}`` and
``GET /api/tenants/{tenantId}/consent-link``, each for the app role ``DSR.Admin``.

The routes parse, call the use case (:mod:`intake.tenant_admin`) and return its verdict, which
:func:`intake.verdicts.answers` renders. No Durable client: the registry is in storage.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Role
from dsr_export.settings import tenancy_settings
from intake import tenant_admin
from intake.verdicts import Verdict, answers, caller_of, json_object

bp = df.Blueprint()


@bp.route(route="tenants", methods=["GET", "POST"])
@answers
async def tenants_collection(req: func.HttpRequest) -> Verdict:
    """GET: every registered tenant. POST: register one (201, ``Location``, ``ETag``)."""
    caller = caller_of(req, Role.ADMIN)
    registry = composition.tenant_registry()
    if req.method.upper() == "GET":
        return tenant_admin.list_tenants(registry)
    payload = json_object(req)
    return tenant_admin.add_tenant(registry, caller, payload, composition.now())


@bp.route(route="tenants/{tenantId}", methods=["GET", "PATCH"])
@answers
async def tenant_item(req: func.HttpRequest) -> Verdict:
    """GET: one tenant and its version (``ETag``). PATCH: a JSON merge patch of it, conditional
    on ``If-Match`` when sent."""
    caller = caller_of(req, Role.ADMIN)
    tenant_id = tenant_admin.valid_id(req.route_params.get("tenantId"))
    registry = composition.tenant_registry()
    if req.method.upper() == "GET":
        return tenant_admin.get_tenant(registry, tenant_id)
    patch = json_object(req)
    if_match = req.headers.get("if-match") or None
    return tenant_admin.update_tenant(
        registry, caller, tenant_id, patch, composition.now(), if_match
    )


@bp.route(route="tenants/{tenantId}/consent-link", methods=["GET"])
@answers
async def tenant_consent_link(req: func.HttpRequest) -> Verdict:
    """The admin-consent URL an administrator of the tenant opens to grant the app's Graph
    permissions (``redirectUri``: where Entra sends them after, if registered on the app)."""
    caller_of(req, Role.ADMIN)
    tenant_id = tenant_admin.valid_id(req.route_params.get("tenantId"))
    redirect = req.params.get("redirectUri") or None
    return tenant_admin.consent_link(
        composition.tenant_registry(), tenancy_settings(), tenant_id, redirect
    )
