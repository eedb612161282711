"""How many DSRs of a tenant are still in flight: what retiring a tenant must not strand.

The seam between the tenant registry and the DSRs (issue 21). Retiring a tenant is refused
while any of its DSRs is in flight (``intake.tenant_admin.retire_tenant``), unless forced, and
that needs the DSRs of one tenant, which the DSR-to-tenant link gives (each DSR's id names its
tenant's key: ``{tenant key}:{requestId}``). Until that link is in place every DSR is the home
tenant's, exported there whatever the registry holds (docs/msp.md, "What is built"): no DSR
belongs to a registered customer tenant, so none is in flight for one and the count is zero.

When DSRs carry their tenant, this function is the one place to change: count the task hub's
live DSR instances (``intake.service.LIVE_STATES``) whose id belongs to ``tenant_id``
(``dsr_keys.belongs_to``), which needs the route's Durable client passed in. Kept out of
:mod:`intake.tenant_admin`, whose use cases take the count as an argument (the route tests
swap it), so that the rule and its data source can change apart.
"""

from __future__ import annotations


async def in_flight(tenant_id: str) -> int:
    """The number of ``tenant_id``'s DSRs not ended yet (none before DSRs carry a tenant)."""
    del tenant_id  # every DSR is the home tenant's until the DSR-to-tenant link lands
    return 0
