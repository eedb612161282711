"""Drive one orchestrator through the SDK's real replay, one step at a time.

:class:`ReplayDriver` plays the Durable extension's part for a single instance, without storage,
threads or a clock of its own: it records each action the orchestrator emits as history events,
replays the whole history every episode (as the host does) and lets its caller answer
activities, fail them, fire timers and raise events. Nothing of the orchestrator is stubbed: it
runs through the entry point the Python worker calls (context JSON in, orchestrator state JSON
out). Where :class:`~devhost.durable.DurableEngine` runs an app by itself, this is for tests and
benchmarks that decide every answer. It imports no part of the offline host (the import contract
"Test support stands alone" in pyproject.toml), so unit tests and ``bench/`` use it as they are.

Like the offline host it drives the app from outside: it is handed the
orchestrator's entry point (``get_user_function()`` of the registered function), and never
imports the app::

    functions = app.get_functions()          # once: a second call raises
    driver = ReplayDriver(user_functions(functions)["my_orchestrator"], "my_orchestrator", {})
    driver.episode()
    driver.complete({"answer": 42})          # the activity it scheduled
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import durable_protocol as p
from .durable_protocol import Act, Ev, ts

__all__ = [
    "START",
    "Act",
    "Action",
    "Entry",
    "Ev",
    "Kind",
    "ReplayDriver",
    "ReplayError",
    "user_functions",
]

#: Where a driver's clock starts unless told otherwise: fixed, so a run's history and every
#: timestamp in it are the same each time.
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

#: The worker's entry point of an orchestrator: context JSON in, orchestrator state JSON out.
Entry = Callable[[str], str]


def user_functions(functions: Iterable[Any]) -> dict[str, Any]:
    """The worker's entry point (``get_user_function()``) of each function, by name."""
    return {fn.get_function_name(): fn.get_user_function() for fn in functions}


class ReplayError(AssertionError):
    """The driver was asked for a step the orchestrator is not waiting for."""


class Kind(enum.StrEnum):
    """What an :class:`Action` asks for."""

    ACTIVITY = "activity"
    TIMER = "timer"
    EVENT = "event"
    CONTINUE_AS_NEW = "continue_as_new"
    ENTITY = "entity"  # a call (answered) or signal (not) to an entity operation


@dataclass
class Action:
    """One leaf action the orchestrator asked for, with the sequence id it got."""

    kind: Kind
    name: str | None = None
    input: Any = None
    fire_at: Any = None  # a datetime for timers; Any keeps callers' arithmetic free of casts
    retry: dict[str, Any] | None = None
    #: An entity operation's target (``@name@key``) and whether it is a one-way signal.
    target: str | None = None
    signal: bool = False
    seq: int = -1
    attempts: int = 0
    done: bool = False


class ReplayDriver:
    """The extension's side of one orchestration instance.

    ``now`` is the driver's clock: it moves only when a timer fires (or a host retry waits).
    ``history`` holds the current execution's events, ``actions`` what the orchestrator asked
    for in it, ``replies`` every orchestrator state the SDK returned.

    ``entities`` maps entity names to their functions' entry points (``get_user_function()``):
    operations on those run at once, through the SDK's entity entry point, on state the driver
    keeps (``entity_states``, by ``@name@key``), and a call's answer is delivered as the next
    episode, as the extension would. Calls to any other entity stay open for
    :meth:`answer_entity`.
    """

    def __init__(
        self,
        entry: Entry,
        name: str,
        input: Any,
        *,
        now: datetime = START,
        instance_id: str = "replay",
        entities: dict[str, Entry] | None = None,
    ) -> None:
        self.name = name
        self.entities = dict(entities or {})
        self.entity_states: dict[str, str | None] = {}
        self._answers: list[tuple[Action, dict[str, Any]]] = []
        self.now = now
        self.instance_id = instance_id
        self.input: Any = None
        self.history: list[dict[str, Any]] = []
        self.actions: list[Action] = []
        self.replies: list[dict[str, Any]] = []
        self._seq = 0
        self._entry = entry
        self._new_execution(input)

    # -- what the host does -------------------------------------------------------------------
    def _event(self, kind: Ev, event_id: int = -1, **fields: Any) -> None:
        self.history.append(p.event(kind, self.now, event_id, **fields))

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _new_execution(self, payload: Any) -> None:
        self.input, self.history, self.actions, self._seq = payload, [], [], 0
        self._event(Ev.ORCHESTRATOR_STARTED)
        self._event(Ev.EXECUTION_STARTED, Name=self.name, Version="", Input=json.dumps(payload))

    def episode(self) -> dict[str, Any]:
        """Replay the history once; record new actions; return the SDK's reply."""
        context = p.orchestration_context(
            self.instance_id,
            self.history,
            self.input,
            replaying=any(e["IsPlayed"] for e in self.history),
        )
        reply: dict[str, Any] = json.loads(self._entry(json.dumps(context)))
        self.replies.append(reply)
        leaves = list(p.flatten(reply.get("actions") or []))
        for raw in leaves[len(self.actions) :]:
            self.actions.append(self._schedule(raw))
        for event in self.history:
            event["IsPlayed"] = True  # everything up to here is old news for the next replay
        if self._answers:
            action, result = self._answers.pop(0)
            return self._entity_answered(action, result)
        return reply

    def _entity_answered(self, action: Action, result: dict[str, Any]) -> dict[str, Any]:
        action.done = True
        self._new_episode()
        self._event(Ev.EVENT_RAISED, Name=_request_id(action), Input=p.entity_response(result))
        return self.episode()

    def _run_entity(self, action: Action, raw: dict[str, Any]) -> None:
        """Run an operation on an entity the driver has the function of."""
        assert action.target is not None
        name, key = p.split_entity_id(action.target)
        entry = self.entities[name]
        request = p.entity_request(raw, _request_id(action), self.instance_id)
        state = self.entity_states.get(action.target)
        reply = json.loads(entry(json.dumps(p.entity_context(name, key, state, [request]))))
        self.entity_states[action.target] = (
            reply.get("entityState") if reply.get("entityExists") else None
        )
        if action.signal:
            action.done = True
        else:
            self._answers.append((action, reply["results"][0]))

    def _schedule(self, raw: dict[str, Any]) -> Action:
        kind = raw.get("actionType")
        if kind in (Act.CALL_ACTIVITY, Act.CALL_ACTIVITY_WITH_RETRY):
            action = Action(
                Kind.ACTIVITY,
                raw["functionName"],
                json.loads(raw["input"]) if raw.get("input") else None,
                retry=raw.get("retryOptions"),
                seq=self._next_seq(),
            )
            self._event(Ev.TASK_SCHEDULED, action.seq, Name=action.name)
            return action
        if kind == Act.CREATE_TIMER:
            fire_at = datetime.fromisoformat(str(raw["fireAt"]))
            action = Action(Kind.TIMER, fire_at=fire_at, seq=self._next_seq())
            self._event(Ev.TIMER_CREATED, action.seq, FireAt=raw["fireAt"])
            return action
        if kind == Act.WAIT_FOR_EXTERNAL_EVENT:
            return Action(Kind.EVENT, name=raw["externalEventName"])
        if kind in p.ENTITY_ACTIONS:
            target = str(raw["instanceId"])
            action = Action(
                Kind.ENTITY,
                raw.get("operation"),
                json.loads(raw["input"]) if raw.get("input") else None,
                target=target,
                signal=kind == Act.SIGNAL_ENTITY,
                seq=self._next_seq(),
            )
            request = p.entity_request(raw, _request_id(action), self.instance_id)
            self._event(
                Ev.EVENT_SENT, action.seq, InstanceId=target, Name="op", Input=json.dumps(request)
            )
            if p.split_entity_id(target)[0] in self.entities:
                self._run_entity(action, raw)
            return action
        if kind == Act.CONTINUE_AS_NEW:
            return Action(Kind.CONTINUE_AS_NEW, input=json.loads(raw["input"]))
        raise ReplayError(f"the driver does not implement {p.describe_action(raw)}: {raw}")

    def _new_episode(self) -> None:
        """Close the last episode and open the next: what the host records before new events."""
        self._event(Ev.ORCHESTRATOR_COMPLETED)
        self._event(Ev.ORCHESTRATOR_STARTED)

    def _open_activity(self, name: str | None = None) -> Action:
        action = self.pending()
        _expect(action.kind == Kind.ACTIVITY, f"the open action is not an activity: {action}")
        if name is not None:
            _expect(action.name == name, f"open activity is {action.name}, not {name}")
        return action

    # -- what the caller does -----------------------------------------------------------------
    def pending(self) -> Action:
        """The open activity or timer the orchestrator scheduled last (a timer that lost a
        ``task_any`` race stays open, as in the real host)."""
        open_ = [a for a in self.actions if not a.done and a.kind in (Kind.ACTIVITY, Kind.TIMER)]
        _expect(bool(open_), "nothing is open")
        return open_[-1]

    def activities(self, name: str) -> list[Action]:
        """Every scheduled activity called ``name``, in order."""
        return [a for a in self.actions if a.kind == Kind.ACTIVITY and a.name == name]

    def complete(self, result: Any, *, name: str | None = None) -> dict[str, Any]:
        """Finish the open activity (called ``name``, when given) with ``result``."""
        action = self._open_activity(name)
        action.done = True
        self._new_episode()
        self._event(Ev.TASK_COMPLETED, TaskScheduledId=action.seq, Result=json.dumps(result))
        return self.episode()

    def fail(self, reason: str) -> dict[str, Any]:
        """Fail the open activity once (a plain ``call_activity``: no host retry)."""
        action = self._open_activity()
        _expect(action.retry is None, "use fail_attempt for activities with retry options")
        action.done = True
        self._new_episode()
        self._event(Ev.TASK_FAILED, TaskScheduledId=action.seq, Reason=reason, Details=reason)
        return self.episode()

    def fail_attempt(self, reason: str) -> dict[str, Any]:
        """One failed attempt of the open retryable activity, with the host's retry timer and,
        while attempts remain, the next attempt."""
        action = self._open_activity()
        retry = action.retry
        if retry is None:
            raise ReplayError("use fail for activities without retry options")
        action.attempts += 1
        self._new_episode()
        self._event(Ev.TASK_FAILED, TaskScheduledId=action.seq, Reason=reason, Details=reason)
        delay = timedelta(milliseconds=retry["firstRetryIntervalInMilliseconds"])
        fire_at = ts(self.now + delay)
        timer = self._next_seq()
        self._event(Ev.TIMER_CREATED, timer, FireAt=fire_at)
        self.now += delay
        self._event(Ev.TIMER_FIRED, TimerId=timer, FireAt=fire_at)
        if action.attempts < retry["maxNumberOfAttempts"]:
            action.seq = self._next_seq()
            self._event(Ev.TASK_SCHEDULED, action.seq, Name=action.name)
        else:
            action.done = True
        return self.episode()

    def fire_timer(self) -> dict[str, Any]:
        """Advance the clock to the open timer and fire it."""
        action = self.pending()
        _expect(action.kind == Kind.TIMER, f"the open action is not a timer: {action}")
        action.done = True
        self.now = max(self.now, action.fire_at)
        self._new_episode()
        self._event(Ev.TIMER_FIRED, TimerId=action.seq, FireAt=ts(action.fire_at))
        return self.episode()

    def raise_event(self, name: str, data: Any) -> dict[str, Any]:
        """Deliver an external event the way the extension records one sent by the SDK client:
        the client JSON-encodes the data and the extension stores that text as a JSON string."""
        self._new_episode()
        self._event(Ev.EVENT_RAISED, Name=name, Input=json.dumps(json.dumps(data)))
        return self.episode()

    def entity_calls(self, operation: str | None = None) -> list[Action]:
        """Every entity operation (calls and signals) of this execution, in order."""
        return [
            a
            for a in self.actions
            if a.kind == Kind.ENTITY and (operation is None or a.name == operation)
        ]

    def answer_entity(self, result: Any) -> dict[str, Any]:
        """Answer the open call to an entity the driver does not run, with ``result``."""
        open_ = [a for a in self.entity_calls() if not a.done and not a.signal]
        _expect(bool(open_), "no entity call is open")
        return self._entity_answered(open_[0], {"isError": False, "result": json.dumps(result)})

    def continue_as_new(self) -> dict[str, Any]:
        """Start the next execution with the input the orchestrator asked for."""
        action = self.actions[-1]
        _expect(action.kind == Kind.CONTINUE_AS_NEW, f"the last action is {action}")
        self._new_execution(action.input)
        return self.episode()


def _request_id(action: Action) -> str:
    """A call's request id: fixed by its sequence, so the driver's histories repeat exactly."""
    return f"request-{action.seq}"


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ReplayError(message)
