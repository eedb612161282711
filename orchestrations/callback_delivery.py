"""Delivering one ticket callback from an orchestration, with a real back-off.

Shared by the DSR's own orchestration and :mod:`orchestrations.deliver_notice` (the events an
API route raises after the DSR ended: the data delivered or erased). The 1.x SDK's retry
options have no back-off coefficient, so the waits are durable timers of our own
(:data:`dsr_export.domain.pacing.CALLBACK_WAITS`).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from dsr_export.domain import pacing, steps


def deliver(
    context: df.DurableOrchestrationContext, payload: steps.SendCallback
) -> Generator[Any, Any, steps.CallbackDelivery]:
    """Send ``payload`` until it is delivered, refused for good, or the back-off is spent; the
    outcome is returned, never raised."""
    outcome = steps.CallbackDelivery(delivered=False, status=None)
    for delay in (*pacing.CALLBACK_WAITS, None):
        try:
            raw = yield context.call_activity(steps.SEND_CALLBACK.name, payload.to_dict())
            outcome = steps.CallbackDelivery.from_dict(raw)
        except Exception:  # noqa: BLE001 - the activity raises only for retryable failures
            outcome = steps.CallbackDelivery(delivered=False, status=None)
        if outcome.delivered or outcome.permanent or delay is None:
            break
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
    return outcome
