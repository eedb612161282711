"""Drive an orchestrator through the SDK's real replay entry point with synthetic histories.

The driver plays the Durable extension's part: it records each action the orchestrator emits as
history events, replays the whole history every episode (as the host does), and lets a test
answer activities, fire timers and raise events. Nothing of the orchestrator is stubbed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from function_app import app

#: ``app.get_functions()`` may be called once per process (a second call raises in
#: azure-functions 1.26): every test module takes the app's functions from here.
_FUNCTIONS = app.get_functions()
FUNCTIONS = _FUNCTIONS


def user_function(name: str) -> Any:
    """The worker's entry point of the function called ``name``."""
    return next(f for f in _FUNCTIONS if f.get_function_name() == name).get_user_function()


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Action:
    """One leaf action the orchestrator asked for, with the sequence ids it got."""

    kind: str  # "activity" | "timer" | "event"
    name: str | None = None
    input: Any = None
    fire_at: Any = None  # a datetime for timers; Any keeps test arithmetic free of casts
    retry: dict[str, Any] | None = None
    seq: int = -1
    attempts: int = 0
    done: bool = False


@dataclass
class Driver:
    """The extension's side of one orchestration instance."""

    name: str
    input: dict[str, Any]
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    instance_id: str = "dsr-test"
    history: list[dict[str, Any]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        fn = next(f for f in _FUNCTIONS if f.get_function_name() == self.name)
        self._entry = fn.get_user_function()
        self._new_execution(self.input)

    # -- what the host does -------------------------------------------------------------------
    def _event(self, event_type: int, **fields: Any) -> None:
        self.history.append(
            {
                "EventType": event_type,
                "EventId": fields.pop("EventId", -1),
                "IsPlayed": False,
                "Timestamp": _ts(self.now),
                **fields,
            }
        )

    def _new_execution(self, payload: dict[str, Any]) -> None:
        self.input, self.history, self.actions, self._seq = payload, [], [], 0
        self._event(12)
        self._event(0, Name=self.name, Version="", Input=json.dumps(payload))

    def episode(self) -> dict[str, Any]:
        """Replay the history once; record new actions; return the SDK's reply."""
        context = {
            "history": self.history,
            "instanceId": self.instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "input": json.dumps(self.input),
            "upperSchemaVersion": 2,
        }
        reply: dict[str, Any] = json.loads(self._entry(json.dumps(context)))
        self.replies.append(reply)
        leaves = [leaf for group in reply.get("actions", []) for leaf in _leaves(group)]
        for raw in leaves[len(self.actions) :]:
            self.actions.append(self._schedule(raw))
        for event in self.history:
            event["IsPlayed"] = True  # everything up to here is old news for the next replay
        return reply

    def _schedule(self, raw: dict[str, Any]) -> Action:
        kind = raw["actionType"]
        if kind in (0, 1):
            action = Action(
                "activity",
                raw["functionName"],
                json.loads(raw["input"]) if raw.get("input") else None,
                retry=raw.get("retryOptions"),
                seq=self._seq,
            )
            self._event(4, EventId=self._seq, Name=action.name)
            self._seq += 1
            return action
        if kind == 5:
            action = Action("timer", fire_at=_parse_ts(raw["fireAt"]), seq=self._seq)
            self._event(10, EventId=self._seq, FireAt=raw["fireAt"])
            self._seq += 1
            return action
        if kind == 6:
            return Action("event", name=raw["externalEventName"])
        if kind == 4:
            return Action("continue_as_new", input=json.loads(raw["input"]))
        raise AssertionError(f"unexpected action {raw}")

    def _new_episode(self) -> None:
        """Close the last episode and open the next: what the host records before new events."""
        self._event(13)
        self._event(12)

    # -- what a test does ---------------------------------------------------------------------
    def pending(self) -> Action:
        """The open activity or timer the orchestrator scheduled last (a timer that lost a
        ``task_any`` race stays open, as in the real host)."""
        open_ = [a for a in self.actions if not a.done and a.kind in ("activity", "timer")]
        assert open_, "nothing is open"
        return open_[-1]

    def complete(self, result: Any, *, name: str | None = None) -> dict[str, Any]:
        """Finish the open activity with ``result``."""
        action = self.pending()
        assert action.kind == "activity", action
        if name is not None:
            assert action.name == name, f"open activity is {action.name}, not {name}"
        action.done = True
        self._new_episode()
        self._event(5, TaskScheduledId=action.seq, Result=json.dumps(result))
        return self.episode()

    def fail_attempt(self, reason: str) -> dict[str, Any]:
        """One failed attempt of the open retryable activity, with the host's retry timer."""
        action = self.pending()
        assert action.kind == "activity"
        assert action.retry is not None
        action.attempts += 1
        self._new_episode()
        self._event(6, TaskScheduledId=action.seq, Reason=reason, Details=reason)
        delay = timedelta(milliseconds=action.retry["firstRetryIntervalInMilliseconds"])
        fire_at = _ts(self.now + delay)
        self._event(10, EventId=self._seq, FireAt=fire_at)
        self.now += delay
        self._event(11, TimerId=self._seq, FireAt=fire_at)
        self._seq += 1
        if action.attempts < action.retry["maxNumberOfAttempts"]:
            action.seq = self._seq
            self._event(4, EventId=self._seq, Name=action.name)
            self._seq += 1
        else:
            action.done = True
        return self.episode()

    def fail(self, reason: str) -> dict[str, Any]:
        """Fail the open activity once (a plain ``call_activity``: no host retry)."""
        action = self.pending()
        assert action.kind == "activity"
        assert action.retry is None, "use fail_attempt for activities with retry options"
        action.done = True
        self._new_episode()
        self._event(6, TaskScheduledId=action.seq, Reason=reason, Details=reason)
        return self.episode()

    def activities(self, name: str) -> list[Action]:
        """Every scheduled activity called ``name``, in order."""
        return [a for a in self.actions if a.kind == "activity" and a.name == name]

    def fire_timer(self) -> dict[str, Any]:
        """Advance the clock to the open timer and fire it."""
        action = self.pending()
        assert action.kind == "timer", action
        assert action.fire_at is not None
        action.done = True
        self.now = max(self.now, action.fire_at)
        self._new_episode()
        self._event(11, TimerId=action.seq, FireAt=_ts(action.fire_at))
        return self.episode()

    def raise_event(self, name: str, data: Any) -> dict[str, Any]:
        """Deliver an external event the way the extension records one sent by the SDK client:
        the client JSON-encodes the data and the extension stores that text as a JSON string."""
        self._new_episode()
        self._event(15, Name=name, Input=json.dumps(json.dumps(data)))
        return self.episode()

    def continue_as_new(self) -> dict[str, Any]:
        """Start the next execution with the input the orchestrator asked for."""
        action = self.actions[-1]
        assert action.kind == "continue_as_new"
        self._new_execution(action.input)
        return self.episode()


def _leaves(action: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(action, list):
        return [leaf for item in action for leaf in _leaves(item)]
    if action.get("compoundActions"):
        return [leaf for item in action["compoundActions"] for leaf in _leaves(item)]
    return [action]
