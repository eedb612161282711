"""The callers' tenant bindings: list, read, bind and unbind a principal (routes in
:mod:`intake.tenants_api`; each needs ``DSR.Admin`` and a caller bound to every tenant).

A binding says where a caller may act (:mod:`dsr_export.domain.bindings`). Only an operator
bound to every tenant may read or change them: a caller bound to tenant A that could bind
itself to B, or read who is bound to B, would hold no boundary at all. Bindings take effect in
``TENANCY=multi`` only; a change in ``single`` is refused (409) rather than accepted to no
effect. Every change is recorded in the registry's change log by the store itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from dsr_export.domain import bindings
from dsr_export.domain.callers import Caller
from dsr_export.domain.request import InvalidRequest
from dsr_export.settings import TenancySettings
from intake.auth import operators_only
from intake.verdicts import Done, Problem, Refused

if TYPE_CHECKING:
    from dsr_export.adapters.tenant_registry import TenantRegistry


def operator(caller: Caller) -> None:
    """Refused (403) unless ``caller`` is bound to every tenant."""
    refusal = operators_only(caller, "read or change the tenant bindings")
    if refusal is not None:
        raise Refused(Problem.INVALID, "not bound to every tenant", ready=refusal)


def valid_principal(raw: str | None) -> str:
    """The route's ``{principal}``, valid (lower case)."""
    try:
        return bindings.valid_principal(raw)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "invalid principal", "Invalid principal") from None


def list_bindings(registry: TenantRegistry) -> Done:
    found = registry.bindings.all()
    return Done({"bindings": [b.to_json() for b in found], "count": len(found)})


def get_binding(registry: TenantRegistry, principal: str) -> Done:
    found = registry.bindings.get(principal)
    if found is None:
        raise _unbound(principal)
    return Done(found.to_json())


def put_binding(
    registry: TenantRegistry,
    tenancy: TenancySettings,
    caller: Caller,
    principal: str,
    payload: dict[str, Any],
    now: datetime,
) -> Done:
    """Bind ``principal`` to the tenants the body names (``"*"``: every tenant), replacing its
    binding; 201 when it was bound nowhere before, 200 otherwise. Each tenant named must be
    registered and active (a retired one is refused as not registered), checked again on the
    version of the bindings written (a tenant retired meanwhile is never bound)."""
    _multi(tenancy)

    def checked() -> bindings.Binding:
        return bindings.parse_binding(principal, payload, _active(registry))

    try:
        binding = checked()
        stored, created = registry.bindings.put(binding, caller.to_dict(), now, guard=checked)
    except InvalidRequest as exc:
        raise Refused.invalid(exc, "the binding is not valid", "Invalid binding") from None
    return Done(stored.to_json(), status=201 if created else 200)


def _active(registry: TenantRegistry) -> set[str]:
    """The ids of the tenants a binding may name: registered and not retired."""
    return {r.tenant.tenant_id for r in registry.list() if r.tenant.accepts_dsrs}


def delete_binding(
    registry: TenantRegistry,
    tenancy: TenancySettings,
    caller: Caller,
    principal: str,
    now: datetime,
) -> Done:
    """Remove ``principal``'s binding: from the next request on it reaches no tenant."""
    _multi(tenancy)
    if not registry.bindings.delete(principal, caller.to_dict(), now):
        raise _unbound(principal)
    return Done({"principal": principal, "tenants": [], "removed": True})


def _multi(tenancy: TenancySettings) -> None:
    if not tenancy.multi:
        raise Refused.conflict(
            "this deployment serves one tenant (TENANCY=single): every caller reaches it, and "
            "a binding would change nothing",
            "Single tenancy",
        )


def _unbound(principal: str) -> Refused:
    return Refused(
        Problem.NOT_FOUND, f"no binding for principal {principal}", title="Unknown binding"
    )
