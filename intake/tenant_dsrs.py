"""How many DSRs of a tenant are still in flight, or still held: what retiring a tenant must
not strand, and what moving its exports must not lose.

The seam between the tenant registry and the DSRs (issue 21). Retiring a tenant is refused
while any of its DSRs is in flight (``intake.tenant_admin.retire_tenant``), unless forced, and
moving its exports to another account (``exportsAccount``) while any of its DSRs is still held
in the task hub (docs/architecture.md, "Many tenants"). A DSR's id names its tenant's key
(``{tenant key}:{requestId}``, :mod:`dsr_export.domain.dsr_keys`), so the count asks the task
hub for the instances whose id starts with that key (the extension's ``instanceIdPrefix``: one
partition range in the Azure Storage backend, not every tenant's DSRs read and filtered) and
counts the DSR orchestrations among them that belong to the tenant. Kept out of
:mod:`intake.tenant_admin`, whose use cases take the count as an argument, so that the rule
and its data source can change apart.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from dsr_export.adapters.durable_client import TaskHub
from dsr_export.domain import dsr_keys
from dsr_export.domain.steps import ORCHESTRATOR
from dsr_export.settings import tenancy_settings
from intake.listing import LIST_WINDOW
from intake.retention import LOOKBACK
from intake.service import LIVE_STATES


async def in_flight(hub: TaskHub, tenant_id: str, now: datetime) -> int:
    """The number of ``tenant_id``'s DSRs not ended yet (live in the task hub), among those
    created in the list's window (what ``dsrctl ls --tenant`` shows). Zero with
    ``TENANCY=single``: every DSR is the home tenant's there, none a registered tenant's."""
    return await _count(hub, tenant_id, now - LIST_WINDOW, now, LIVE_STATES)


async def held(hub: TaskHub, tenant_id: str, now: datetime) -> int:
    """The number of ``tenant_id``'s DSRs still in the task hub, live or ended: those whose
    containers may still be in its export account. The history is what finds a DSR's data, and
    retention purges it only after the data is deleted (``HISTORY_RETENTION_DAYS`` is at least
    ``EXPORT_RETENTION_DAYS``), so a DSR no longer held has no container left."""
    return await _count(hub, tenant_id, now - LOOKBACK, now, frozenset())


async def _count(
    hub: TaskHub, tenant_id: str, low: datetime, high: datetime, states: frozenset[str]
) -> int:
    if not tenancy_settings().multi:
        return 0
    count = 0
    pages = hub.query_pages(
        created_from=low,
        created_to=high,
        runtime_status=sorted(states),
        instance_id_prefix=f"{dsr_keys.tenant_key(tenant_id)}:",
    )
    async with contextlib.aclosing(pages):
        async for page in pages:
            count += sum(
                1
                for status in page.statuses
                if status.name == ORCHESTRATOR
                and status.runtime_status is not None
                and (not states or status.runtime_status.name in states)
                and dsr_keys.belongs_to(str(status.instance_id), tenant_id)
            )
    return count
