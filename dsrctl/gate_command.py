"""``dsrctl gate [TENANT_ID]``: what a tenant's submit gate holds (app role ``DSR.Read``).

The queue waiting for a slot (earliest legal deadline first), the next slot, the submits used
in the rolling 24 hours against Graph's quota, the exports in flight and whether a quota refusal
holds the gate, from ``GET /api/gate`` (the home tenant) or ``GET /api/gate/{tenantId}``. Counts
and times only: the answer names no DSR and no person.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from dsrctl import output
from dsrctl.commands import Settings, _handled, _json_option

#: The view's fields that are times, printed as ``2026-12-31 09:00 UTC``.
_TIMES = {"asOf", "nextSlotAt", "earliestDeadline", "blockedUntil"}


@click.command(name="gate")
@click.argument("tenant_id", required=False)
@_json_option
@_handled
def gate(settings: Settings, out: output.Output, tenant_id: str | None) -> int:
    """Show a tenant's submit gate: queue, next slot, quota used, exports in flight
    (GET /api/gate[/{tenantId}]; without TENANT_ID the home tenant's)."""
    view = settings.client().gate(tenant_id)
    if out.json_mode:
        out.json(view)
        return output.EXIT_OK
    out.pairs(gate_pairs(view))
    return output.EXIT_OK


def gate_pairs(view: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The gate's view as ``name: value`` lines, the operator's questions first."""
    budget, quota = view.get("submitBudget"), view.get("submitQuota")
    limit = min(budget, quota) if isinstance(budget, int) and isinstance(quota, int) else quota
    # The tenant's share when it has one (``quotaBudget``), else Graph's documented quota.
    used = f"{view.get('submitsInWindow')} of {limit}"
    pairs = [
        ("tenant", str(view.get("tenant"))),
        ("queued", str(view.get("queued"))),
        ("next slot", output.moment(view.get("nextSlotAt"))),
        ("earliest deadline", output.moment(view.get("earliestDeadline"))),
        ("submits used", f"{used} in the last {view.get('windowHours')} h"),
        ("exports in flight", str(view.get("exportsInFlight"))),
    ]
    if isinstance(budget, int) and isinstance(quota, int) and budget < quota:
        pairs.append(("tenant's budget", f"{budget} of Graph's {quota} a day"))
    if view.get("blockedUntil"):
        pairs.append(("held by Graph's quota until", output.moment(view.get("blockedUntil"))))
    shown = {"tenant", "queued", "nextSlotAt", "earliestDeadline", "submitsInWindow"}
    shown |= {"submitQuota", "windowHours", "exportsInFlight", "blockedUntil", "submitBudget"}
    for name in sorted(set(view) - shown):
        value = view[name]
        pairs.append((name, output.moment(value) if name in _TIMES else output.compact(value)))
    return pairs
