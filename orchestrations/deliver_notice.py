"""One ticket callback raised by an API route after the DSR's own orchestration ended (the
data delivered, or erased): the same signed event and back-off as the DSR's own callbacks.

Its input is a :class:`~dsr_export.domain.steps.SendCallback` (ids, the event, the ticket's
callback URL: nothing secret). Its instance id is derived from the DSR's and the event's, so
the route that raises the same event twice starts it once.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from dsr_export.domain import steps
from orchestrations.callback_delivery import deliver

bp = df.Blueprint()

#: The orchestrator's registered name.
NAME = "deliver_notice"


@bp.orchestration_trigger(context_name="context", orchestration=NAME)
def deliver_notice(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Deliver the event; the output says whether it arrived (never the URL)."""
    payload = steps.SendCallback.from_dict(context.get_input())
    outcome = yield from deliver(context, payload)
    return {
        "requestId": payload.request_id,
        "type": payload.event.get("type"),
        "callback": outcome.to_dict(),
    }
