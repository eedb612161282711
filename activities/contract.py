"""How an activity is registered: under its name from the step contract, typed both ways.

Each activity body takes its typed input and returns its typed result; this wrapper reads the
wire form into the one and writes the other out, so no activity spells a key or a name. For
Graph-facing steps it also turns an operator-only problem (a setting, storage refusing the app)
into a ``failed`` result naming the fix, instead of an exception the orchestrator would retry
five times. Storage that does not answer (an outage) is left to those retries, and logged, and
raised as :class:`~dsr_export.domain.errors.StorageUnavailableError` so the orchestrator can
wait out a longer outage where that is worth more than ending the DSR.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import azure.durable_functions as df

from dsr_export.adapters.failures import in_step, setup_error, storage_unanswered
from dsr_export.domain.errors import StorageUnavailableError
from dsr_export.domain.logs import log_event
from dsr_export.domain.steps import GraphStepResult, Step, Wire

In = TypeVar("In", bound=Wire)
Out = TypeVar("Out", bound=Wire)
Result = TypeVar("Result", bound=GraphStepResult)

Payload = dict[str, Any]


def activity(bp: df.Blueprint, step: Step[In, Out]) -> Callable[[Callable[[In], Out]], Any]:
    """Register the decorated body as ``step``'s activity; exceptions propagate (retried)."""

    def register(body: Callable[[In], Out]) -> Any:
        def run(payload: Payload) -> Payload:
            try:
                with in_step(payload.get("requestId"), step.name):
                    return body(step.input_type.from_dict(payload)).to_dict()
            except Exception as exc:
                outage = _note_outage(step, payload, exc)
                if outage is not None:
                    raise outage from exc
                raise

        return _register(bp, step, body, run)

    return register


def graph_activity(
    bp: df.Blueprint, step: Step[In, Result]
) -> Callable[[Callable[[In], Result]], Any]:
    """Like :func:`activity`, with operator-only problems answered as ``failed`` results."""

    def register(body: Callable[[In], Result]) -> Any:
        def run(payload: Payload) -> Payload:
            step_input = step.input_type.from_dict(payload)
            try:
                with in_step(payload.get("requestId"), step.name):
                    return body(step_input).to_dict()
            except Exception as exc:
                error = setup_error(exc)
                if error is None:
                    outage = _note_outage(step, payload, exc)
                    if outage is not None:
                        raise outage from exc
                    raise
                log_event(
                    "setup_error",
                    level=logging.ERROR,
                    request_id=payload.get("requestId"),
                    step=step.name,
                    code=error["code"],
                    setting=error.get("setting"),
                )
                return step.result_type.failed(error).to_dict()

        return _register(bp, step, body, run)

    return register


def _note_outage(
    step: Step[Any, Any], payload: Payload, exc: BaseException
) -> StorageUnavailableError | None:
    """Say in the log that storage did not answer this step, which the orchestrator's retry
    options will try again (docs/operations.md: how long an outage is ridden out); returns the
    error to raise instead, which names the outage so the orchestrator can tell it from any
    other failure once the retries are spent."""
    reason = storage_unanswered(exc)
    if reason is None:
        return None
    log_event(
        "storage_unavailable",
        level=logging.WARNING,
        request_id=payload.get("requestId"),
        step=step.name,
        reason=reason,
        waiting_for="storage (activity retried)",
    )
    return StorageUnavailableError(
        f"storage did not answer step {step.name} ({reason}: {type(exc).__name__})"
    )


def _register(
    bp: df.Blueprint, step: Step[Any, Any], body: Callable[..., Any], run: Callable[..., Any]
) -> Any:
    run.__name__ = run.__qualname__ = step.name
    run.__doc__ = body.__doc__
    return bp.function_name(step.name)(bp.activity_trigger(input_name="payload")(run))
