"""The tenant registry over HTTP (``TENANCY=multi``; docs/deploy.md, "Many tenants"):
``GET/POST /api/tenants`` (``?state=active|retired|all``), ``GET/PATCH /api/tenants/{tenantId}``,
``POST /api/tenants/{tenantId}/retire`` and ``.../reinstate`` (offboarding), and
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
from intake import binding_admin, tenant_admin, tenant_dsrs
from intake.verdicts import Verdict, answers, caller_of, json_object

bp = df.Blueprint()


@bp.route(route="tenants", methods=["GET", "POST"])
@answers
async def tenants_collection(req: func.HttpRequest) -> Verdict:
    """GET: the registered tenants (``state``: ``active`` by default, ``retired`` or ``all``).
    POST: register one (201, ``Location``, ``ETag``)."""
    caller = caller_of(req, Role.ADMIN)
    registry = composition.tenant_registry()
    if req.method.upper() == "GET":
        state = tenant_admin.valid_state(req.params.get("state"))
        return tenant_admin.list_tenants(registry, caller, state)
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


@bp.route(route="tenants/{tenantId}/retire", methods=["POST"])
@answers
async def tenant_retire(req: func.HttpRequest) -> Verdict:
    """Retire the tenant (its customer left): a record from then on, no new DSRs, no
    bindings, left out of the deep health check. 409 while its DSRs are in flight, unless
    ``{"force": true}``; conditional on ``If-Match`` when sent."""
    caller = caller_of(req, Role.ADMIN)
    tenant_id = tenant_admin.valid_id(req.route_params.get("tenantId"))
    payload = json_object(req, optional=True)
    in_flight = await tenant_dsrs.in_flight(tenant_id)
    retired = tenant_admin.retire_tenant(
        composition.tenant_registry(),
        caller,
        tenant_id,
        payload,
        composition.now(),
        in_flight,
        req.headers.get("if-match") or None,
    )
    if tenancy_settings().multi:
        # Its credential and cached tokens go too (this instance's; others' expire in the hour).
        composition.tenant_credentials().forget(tenant_id)
    return retired


@bp.route(route="tenants/{tenantId}/reinstate", methods=["POST"])
@answers
async def tenant_reinstate(req: func.HttpRequest) -> Verdict:
    """Make a retired tenant active again (its bindings are not given back)."""
    caller = caller_of(req, Role.ADMIN)
    tenant_id = tenant_admin.valid_id(req.route_params.get("tenantId"))
    return tenant_admin.reinstate_tenant(
        composition.tenant_registry(),
        caller,
        tenant_id,
        composition.now(),
        req.headers.get("if-match") or None,
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
