"""The wire shapes shared with the Durable Functions Python SDK's replay.

History events are built with the field names and numeric types the SDK's ``HistoryEvent``
reads; actions are read with the names its ``OrchestratorState`` writes. Keeping both here
makes the offline host's engine (``devhost.durable``) and the replay driver
(:mod:`testsupport.replay`) independent of the JSON spelling. It lives in ``testsupport``, not in
the engine, so that the unit tests and the benchmarks replay orchestrators without importing any
part of the offline host.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(moment: datetime) -> str:
    """Fixed-width UTC text: sorts like the instant it names, and parses in the SDK."""
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


_OUT_OF_PROC_MARKER = "$OutOfProcData$:"
#: Azure Storage's timer limits, as the extension announces them: the SDK splits longer timers.
MAX_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"


class Ev(IntEnum):
    """History event types, numbered as in ``HistoryEventType``."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15


class Act(IntEnum):
    """Action types, numbered as in ``ActionType``."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


SUPPORTED_LEAVES = frozenset(
    {
        Act.CALL_ACTIVITY,
        Act.CALL_ACTIVITY_WITH_RETRY,
        Act.CONTINUE_AS_NEW,
        Act.CREATE_TIMER,
        Act.WAIT_FOR_EXTERNAL_EVENT,
        Act.CALL_ENTITY,
        Act.SIGNAL_ENTITY,
    }
)
#: Actions that send a message to an entity (recorded as ``EventSent``).
ENTITY_ACTIONS = frozenset({Act.CALL_ENTITY, Act.SIGNAL_ENTITY})


def event(kind: Ev, at: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {
        "EventType": int(kind),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": ts(at),
    } | fields


def orchestration_context(
    instance_id: str, history: list[dict[str, Any]], input_: Any, *, replaying: bool
) -> dict[str, Any]:
    """The context JSON the extension hands the worker's orchestrator entry point."""
    return {
        "history": history,
        "instanceId": instance_id,
        "isReplaying": replaying,
        "parentInstanceId": None,
        "input": input_,
        # As the extension sends them (V2, plus V3 in the field added for old SDKs), with
        # Azure Storage's timer limits: the SDK then splits longer timers as in Azure.
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        "maximumShortTimerDuration": MAX_SHORT_TIMER,
        "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
    }


def flatten(actions: Any) -> Iterator[dict[str, Any]]:
    """Leaf actions in the order the SDK allocated their sequence numbers."""
    if isinstance(actions, list):
        for item in actions:
            yield from flatten(item)
    elif isinstance(actions, dict):
        if actions.get("actionType") in (Act.WHEN_ANY, Act.WHEN_ALL):
            yield from flatten(actions.get("compoundActions", []))
        else:
            yield actions


def parse_failure(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """Split the SDK's failure exception into the user's message and the orchestrator state."""
    text = str(exc)
    head, sep, tail = text.partition(_OUT_OF_PROC_MARKER)
    if not sep:
        return text, {}
    try:
        state = json.loads(tail)
    except ValueError:
        return head.strip(), {}
    if not isinstance(state, dict):
        return head.strip(), {}
    message = state.get("error") or head.strip()
    return str(message), state


def entity_request(action: dict[str, Any], request_id: str, parent: str) -> dict[str, Any]:
    """The request message the extension sends an entity for a call or signal action, as the
    SDK reads it back from ``EventSent`` (it takes the response's event name from ``id``)."""
    return {
        "id": request_id,
        "op": action.get("operation"),
        "signal": action.get("actionType") == Act.SIGNAL_ENTITY,
        "input": action.get("input"),
        "parent": parent,
    }


def entity_context(
    name: str, key: str, state: str | None, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The context JSON the extension hands an entity function for one batch of operations
    (``state``: the entity's serialised state, None when it does not exist)."""
    return {
        "self": {"name": name, "key": key},
        "exists": state is not None,
        "state": state,
        # The operation's input travels JSON-encoded once more: the SDK's ``get_input`` decodes
        # it twice (``json.loads``, then its own ``df_loads``).
        "batch": [
            {"name": op.get("op"), "input": json.dumps(op.get("input"))} for op in operations
        ],
    }


def entity_response(result: dict[str, Any]) -> str:
    """An operation's result as the ``EventRaised`` input the calling orchestration reads."""
    body: dict[str, Any] = {"result": result.get("result")}
    if result.get("isError"):
        body["exceptionType"] = "Exception"
    return json.dumps(body)


def split_entity_id(scheduler_id: str) -> tuple[str, str]:
    """``@name@key`` -> (name, key), as ``EntityId.get_entity_id`` reads it."""
    _, name, key = scheduler_id.split("@", 2)
    return name, key


def describe_event(ev: dict[str, Any]) -> str:
    if ev["EventType"] == Ev.TASK_SCHEDULED:
        return f"activity '{ev.get('Name')}' (sequence {ev['EventId']})"
    if ev["EventType"] == Ev.EVENT_SENT:
        return f"entity operation to {ev.get('InstanceId')} (sequence {ev['EventId']})"
    return f"timer (sequence {ev['EventId']})"


def describe_action(action: dict[str, Any] | None) -> str:
    if action is None:
        return "nothing (the orchestrator no longer schedules it)"
    kind = action.get("actionType")
    if kind in (Act.CALL_ACTIVITY, Act.CALL_ACTIVITY_WITH_RETRY):
        return f"activity '{action.get('functionName')}'"
    if kind == Act.CREATE_TIMER:
        return "timer"
    if kind in ENTITY_ACTIONS:
        return f"entity operation '{action.get('operation')}' to {action.get('instanceId')}"
    try:
        return f"action {Act(kind).name}"  # type: ignore[arg-type]
    except ValueError:
        return f"action type {kind}"


def matches(ev: dict[str, Any], action: dict[str, Any]) -> bool:
    kind = action.get("actionType")
    if ev["EventType"] == Ev.TASK_SCHEDULED:
        return kind in (Act.CALL_ACTIVITY, Act.CALL_ACTIVITY_WITH_RETRY) and action.get(
            "functionName"
        ) == ev.get("Name")
    if ev["EventType"] == Ev.EVENT_SENT:
        return kind in ENTITY_ACTIONS and action.get("instanceId") == ev.get("InstanceId")
    return bool(kind == Act.CREATE_TIMER)
