"""The tenant registry over HTTP (``TENANCY=multi``; docs/deploy.md, "Many tenants"):
``GET/POST /api/tenants``, ``GET/PATCH /api/tenants/{tenantId}`` and
``GET /api/tenants/{tenantId}/consent-link``, and the callers' tenant bindings,
``GET /api/bindings`` and ``GET/PUT/DELETE /api/bindings/{principal}``, each for the app role
``DSR.Admin`` (and the bindings for a caller bound to every tenant).

The routes parse, call the use case (:mod:`intake.tenant_admin`) and return its verdict, which
:func:`intake.verdicts.answers` renders. No Durable client: the registry is in storage.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain.callers import Role
from dsr_export.settings import tenancy_settings
from intake import binding_admin, tenant_admin
from intake.verdicts import Verdict, answers, caller_of, json_object

bp = df.Blueprint()


@bp.route(route="tenants", methods=["GET", "POST"])
@answers
async def tenants_collection(req: func.HttpRequest) -> Verdict:
    """GET: every registered tenant. POST: register one (201, ``Location``, ``ETag``)."""
    caller = caller_of(req, Role.ADMIN)
    registry = composition.tenant_registry()
    if req.method.upper() == "GET":
        return tenant_admin.list_tenants(registry, caller)
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
        return tenant_admin.get_tenant(registry, caller, tenant_id)
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
    caller = caller_of(req, Role.ADMIN)
    tenant_id = tenant_admin.valid_id(req.route_params.get("tenantId"))
    redirect = req.params.get("redirectUri") or None
    return tenant_admin.consent_link(
        composition.tenant_registry(), tenancy_settings(), caller, tenant_id, redirect
    )


@bp.route(route="bindings", methods=["GET"])
@answers
async def bindings_collection(req: func.HttpRequest) -> Verdict:
    """Every caller's tenant binding (an operator bound to every tenant only)."""
    binding_admin.operator(caller_of(req, Role.ADMIN))
    return binding_admin.list_bindings(composition.tenant_registry())


@bp.route(route="bindings/{principal}", methods=["GET", "PUT", "DELETE"])
@answers
async def binding_item(req: func.HttpRequest) -> Verdict:
    """GET: a principal's binding. PUT: bind it (``{"kind", "tenants"}``, ``"*"`` for every
    tenant), replacing its binding. DELETE: unbind it (it then reaches no tenant)."""
    caller = caller_of(req, Role.ADMIN)
    binding_admin.operator(caller)
    principal = binding_admin.valid_principal(req.route_params.get("principal"))
    registry = composition.tenant_registry()
    method = req.method.upper()
    if method == "GET":
        return binding_admin.get_binding(registry, principal)
    if method == "DELETE":
        return binding_admin.delete_binding(
            registry, tenancy_settings(), caller, principal, composition.now()
        )
    return binding_admin.put_binding(
        registry, tenancy_settings(), caller, principal, json_object(req), composition.now()
    )
