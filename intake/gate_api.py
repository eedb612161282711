"""``GET /api/gate`` and ``GET /api/gate/{tenantId}``: what a tenant's submit gate holds.

The gate (``submit_gate@<tenant>``, a Durable entity; :mod:`dsr_export.domain.gate`) admits the
tenant's DSRs to Graph in deadline order at the pace of the documented quota. An operator asks
it: how many wait, when the next slot comes, how much of the rolling 24 hours' quota is used,
how many exports are in flight, the earliest legal deadline waiting, and whether Graph's quota
refusal holds the gate. The state is read through the Durable client (the extension's
entity-state API): nothing runs on the entity, nothing is queued behind its operations.

``DSR.Read``: the answer is counts and times only (no request id, no subject, nothing of a
person), the same kind of facts the DSR list already shows a reader (each DSR's phase and next
check); it changes nothing, and the people who watch the backlog (service desk, privacy office)
hold that role, not the one that cancels and erases. ``/api/gate`` is the home tenant's gate
(DSRs that name no tenant); ``/api/gate/{tenantId}`` a customer tenant's, within the caller's
tenant scope (else 404, as for a DSR of another tenant).
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain import gate
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.request import FieldError, InvalidRequest
from dsr_export.domain.tenants import TENANT_ID
from intake.verdicts import Done, Problem, Refused, Verdict, answers, caller_of

bp = df.Blueprint()


@bp.route(route="gate", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers
async def get_gate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """The home tenant's gate (DSRs that name no tenant)."""
    caller = caller_of(req, Role.READ)
    return await _gate_view(client, caller, gate.HOME_TENANT)


@bp.route(route="gate/{tenantId}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@answers
async def get_tenant_gate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Verdict:
    """A customer tenant's gate."""
    caller = caller_of(req, Role.READ)
    return await _gate_view(client, caller, _tenant_key(req.route_params.get("tenantId")))


def _tenant_key(raw: str | None) -> str:
    """The gate key a route names: a tenant id (a GUID, lower case) or ``home``."""
    key = (raw or "").strip().lower()
    if key == gate.HOME_TENANT or TENANT_ID.fullmatch(key):
        return key
    error = InvalidRequest([FieldError("/tenantId", "must be a tenant id (a GUID) or home")])
    raise Refused.invalid(error, "the tenant id is invalid", "Invalid tenant id")


async def _gate_view(client: df.DurableOrchestrationClient, caller: Caller, key: str) -> Verdict:
    """The gate's view, or 404 for a tenant outside the caller's scope. A tenant whose gate
    never ran has an empty one (nothing waits, nothing used)."""
    outside = caller.scope.tenants is not None and (
        key == gate.HOME_TENANT or not caller.reaches(key)
    )
    if outside:
        raise Refused(Problem.NOT_FOUND, f"no submit gate for tenant {key}", title="Unknown tenant")
    raw = await composition.task_hub(client).entity_state(gate.ENTITY_NAME, key)
    state = gate.GateState.from_dict(raw)
    return Done(gate.view(state, composition.now().isoformat(), key))
