"""One orchestration episode: replay through the SDK, check, and decide what to persist.

Pure with respect to storage and threads: given the instance, its history and one inbox
message, it returns the ``Episode`` the engine commits in a single transaction (or None when
the message is stale and is simply dropped).

Each episode consumes exactly one message. The SDK allocates sequence numbers both when user
code yields and when a retry's failure or timer is processed; with one new event per episode
those never mix, so the host can follow the numbering without peeking into SDK internals.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from testsupport import durable_protocol as p
from testsupport.durable_protocol import ts

from .store import TERMINAL, Episode, Instance, Message, NewActivity, NewMessage, Send

log = logging.getLogger("devhost.durable")

ACTIVE = frozenset({"Pending", "Running", "Suspended"})
CONTROL = frozenset({"terminate", "suspend", "resume"})


class NonDeterministicOrchestrationError(RuntimeError):
    """A replay no longer matches the recorded history (or uses an unsupported API)."""


@dataclass
class _Outcome:
    """What one run of the orchestrator said, reduced to what the engine acts on."""

    replayed: bool  # False when the SDK failed without reporting its actions
    done: bool
    leaves: list[dict[str, Any]]
    output: Any
    custom_status: Any
    error: str | None


def control(inst: Instance, msg: Message, now: datetime) -> Episode | None:
    """Terminate, suspend or resume; None when the instance is not in a state to accept it."""
    reason = str(msg.body.get("reason", ""))
    ep = Episode(instance=inst, consumed_message=msg.id, events=[])
    if msg.kind == "terminate" and inst.status in ACTIVE:
        inst.status = "Terminated"
        inst.output = json.dumps(reason)
        ep.events = [
            p.event(p.Ev.ORCHESTRATOR_STARTED, now),
            p.event(p.Ev.EXECUTION_TERMINATED, now, Input=json.dumps(reason)),
            p.event(p.Ev.ORCHESTRATOR_COMPLETED, now),
        ]
        ep.drop_pending = True
    elif msg.kind == "suspend" and inst.status in ("Pending", "Running"):
        inst.status = "Suspended"
    elif msg.kind == "resume" and inst.status == "Suspended":
        inst.status = "Running"
    else:
        return None
    inst.last_updated_time = ts(now)
    log.info("instance %s %s", inst.instance_id, inst.status.lower())
    return ep


def replay(
    entry: Callable[[str], str] | None,
    inst: Instance,
    history: list[dict[str, Any]],
    msg: Message,
    now: datetime,
) -> Episode | None:
    if inst.status in TERMINAL or msg.execution_id != inst.execution_id:
        return None
    if msg.kind == "start":
        if history:
            return None
        new = [
            p.event(p.Ev.ORCHESTRATOR_STARTED, now),
            p.event(
                p.Ev.EXECUTION_STARTED,
                now,
                Name=inst.name,
                Version="",
                Input=inst.input,
                OrchestrationInstance={
                    "InstanceId": inst.instance_id,
                    "ExecutionId": inst.execution_id,
                },
            ),
        ]
    else:
        new = [
            p.event(p.Ev.ORCHESTRATOR_STARTED, now),
            dict(msg.body, Timestamp=ts(now), IsPlayed=False),
        ]
    ep = Episode(instance=inst, consumed_message=msg.id, events=list(new))
    inst.status = "Running"
    inst.last_updated_time = ts(now)
    if entry is None:
        _fail(ep, now, f"orchestrator '{inst.name}' is not registered in this host")
        return ep
    outcome = _run(entry, inst, history, new)
    inst.custom_status = (
        None if outcome.custom_status is None else json.dumps(outcome.custom_status)
    )
    try:
        _apply_actions(ep, history, outcome, msg.body, now)
    except NonDeterministicOrchestrationError as exc:
        log.error("instance %s: %s", inst.instance_id, exc)
        _fail(ep, now, str(exc))
        return ep
    can = next((a for a in outcome.leaves if a.get("actionType") == p.Act.CONTINUE_AS_NEW), None)
    if outcome.error is not None:
        _fail(ep, now, outcome.error)
    elif outcome.done and can is not None:
        _continue_as_new(ep, now, can)
    elif outcome.done:
        _complete(ep, now, outcome.output)
    else:
        ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
    # Like DurableTask.Core's own lines (host.json keeps them at Warning): each episode only at
    # DEBUG; the end of an instance at INFO.
    log.log(
        logging.INFO if inst.status in TERMINAL else logging.DEBUG,
        "instance %s of %s: %s -> %s",
        inst.instance_id,
        inst.name,
        _name(new[-1]),
        inst.status,
    )
    return ep


def _run(
    entry: Callable[[str], str],
    inst: Instance,
    history: list[dict[str, Any]],
    new: list[dict[str, Any]],
) -> _Outcome:
    """Call the worker's entry point with the context JSON the extension would send."""
    context = p.orchestration_context(
        inst.instance_id,
        [dict(e, IsPlayed=True) for e in history] + new,
        json.loads(inst.input) if inst.input is not None else None,
        replaying=bool(history),
    )
    try:
        state = json.loads(entry(json.dumps(context)))
        error = None
    except Exception as exc:  # noqa: BLE001 - the SDK reports orchestrator failure this way
        error, state = p.parse_failure(exc)
    return _Outcome(
        replayed=bool(state),
        done=bool(state.get("isDone")),
        leaves=list(p.flatten(state.get("actions") or [])),
        output=state.get("output"),
        custom_status=state.get("customStatus"),
        error=error,
    )


def _apply_actions(
    ep: Episode,
    history: list[dict[str, Any]],
    outcome: _Outcome,
    incoming: dict[str, Any],
    now: datetime,
) -> None:
    """Check the replay against history, then record what this episode newly scheduled."""
    inst = ep.instance
    if not outcome.replayed:
        return
    aux: dict[str, int] = inst.tasks.setdefault("aux", {})
    roots: dict[str, dict[str, Any]] = inst.tasks.setdefault("roots", {})
    recorded = [
        e
        for e in history
        if e["EventType"] in (p.Ev.TASK_SCHEDULED, p.Ev.TIMER_CREATED, p.Ev.EVENT_SENT)
        and str(e["EventId"]) not in aux
    ]
    emitted = [
        a
        for a in outcome.leaves
        if a.get("actionType") not in (p.Act.WAIT_FOR_EXTERNAL_EVENT, p.Act.CONTINUE_AS_NEW)
    ]
    for position, ev in enumerate(recorded):
        action = emitted[position] if position < len(emitted) else None
        if action is None or not p.matches(ev, action):
            raise NonDeterministicOrchestrationError(
                f"NonDeterministicOrchestration: instance {inst.instance_id} of "
                f"'{inst.name}': history scheduled {p.describe_event(ev)} at position "
                f"{position}, but the replay now schedules {p.describe_action(action)}. "
                "Was the orchestrator changed while this instance was running?"
            )
        if ev["EventType"] == p.Ev.TIMER_CREATED and action.get("isCanceled"):
            ep.cancel_timers.append(int(ev["EventId"]))
    for action in outcome.leaves:
        if action.get("actionType") not in p.SUPPORTED_LEAVES:
            raise NonDeterministicOrchestrationError(
                f"NotSupported: instance {inst.instance_id} of '{inst.name}' uses "
                f"{p.describe_action(action)}, which the devhost engine does not implement"
            )
    if outcome.error is not None or outcome.done:
        return
    _retry_step(ep, incoming, aux, roots, now)
    for action in emitted[len(recorded) :]:
        _schedule(ep, action, roots, now)


def _retry_step(
    ep: Episode,
    incoming: dict[str, Any],
    aux: dict[str, int],
    roots: dict[str, dict[str, Any]],
    now: datetime,
) -> None:
    """Host-side retries, in the history shape ``RetryAbleTask`` replays.

    A failed attempt gets a timer; a fired retry timer gets the next attempt, or nothing once
    the attempts are used up (the SDK then fails the task, after that last timer).
    """
    kind = incoming.get("EventType")
    if kind == p.Ev.TASK_FAILED:
        failed_id = str(incoming.get("TaskScheduledId"))
        root = failed_id if failed_id in roots else str(aux.get(failed_id, ""))
        if root not in roots:
            return
        timer_id = _allocate(ep.instance)
        fire_at = ts(now + timedelta(milliseconds=int(roots[root]["interval_ms"])))
        aux[str(timer_id)] = int(root)
        ep.events.append(p.event(p.Ev.TIMER_CREATED, now, timer_id, FireAt=fire_at))
        ep.messages.append(_timer_message(timer_id, fire_at, now))
    elif kind == p.Ev.TIMER_FIRED:
        fired_id = str(incoming.get("TimerId"))
        if fired_id not in aux:
            return
        state = roots[str(aux[fired_id])]
        if state["attempts"] >= state["max"]:
            return
        state["attempts"] += 1
        task_id = _allocate(ep.instance)
        aux[str(task_id)] = aux[fired_id]
        ep.events.append(p.event(p.Ev.TASK_SCHEDULED, now, task_id, Name=state["name"]))
        ep.activities.append(NewActivity(task_id, state["name"], state["input"]))


def _schedule(
    ep: Episode, action: dict[str, Any], roots: dict[str, dict[str, Any]], now: datetime
) -> None:
    kind = action.get("actionType")
    task_id = _allocate(ep.instance)
    if kind in (p.Act.CALL_ACTIVITY, p.Act.CALL_ACTIVITY_WITH_RETRY):
        name = str(action["functionName"])
        ep.events.append(p.event(p.Ev.TASK_SCHEDULED, now, task_id, Name=name))
        ep.activities.append(NewActivity(task_id, name, action.get("input")))
        if kind == p.Act.CALL_ACTIVITY_WITH_RETRY:
            options = action.get("retryOptions") or {}
            roots[str(task_id)] = {
                "name": name,
                "input": action.get("input"),
                "max": int(options.get("maxNumberOfAttempts", 1)),
                "interval_ms": int(options.get("firstRetryIntervalInMilliseconds", 0)),
                "attempts": 1,
            }
    elif kind in p.ENTITY_ACTIONS:
        # Like the extension: an EventSent in the caller's history, the request in the
        # entity's queue; a call's answer comes back as an EventRaised named by the request id.
        inst = ep.instance
        target = str(action["instanceId"])
        request = p.entity_request(action, uuid.uuid4().hex, inst.instance_id)
        request["parentExecution"] = inst.execution_id
        ep.events.append(
            p.event(
                p.Ev.EVENT_SENT,
                now,
                task_id,
                InstanceId=target,
                Name="op",
                Input=json.dumps(request),
            )
        )
        ep.sends.append(Send(target, NewMessage("entity", ts(now), request)))
    elif kind == p.Act.CREATE_TIMER:
        fire_at = ts(datetime.fromisoformat(str(action["fireAt"])))
        ep.events.append(p.event(p.Ev.TIMER_CREATED, now, task_id, FireAt=fire_at))
        if not action.get("isCanceled"):
            ep.messages.append(_timer_message(task_id, fire_at, now))


def entity_operation(
    entry: Callable[[str], str] | None, inst: Instance, msg: Message, now: datetime
) -> Episode:
    """One operation on an entity, as the extension runs it: the entity function gets the
    state and the operation, its new state is kept, a call's caller gets the result.

    One message, one operation, one transaction: the engine's single dispatcher runs the
    operations of an entity one at a time in the order they arrived, and a host killed
    mid-operation runs it again from the stored state (the message is consumed only with the
    new state).
    """
    request = msg.body
    name, key = p.split_entity_id(inst.instance_id)
    ep = Episode(instance=inst, consumed_message=msg.id, events=[])
    if entry is None:
        result: dict[str, Any] = {
            "isError": True,
            "result": json.dumps(f"entity '{name}' is not registered in this host"),
        }
    else:
        context = p.entity_context(name, key, inst.input, [request])
        try:
            reply = json.loads(entry(json.dumps(context)))
        except Exception as exc:  # noqa: BLE001 - the extension answers the caller with it
            reply = {"results": [{"isError": True, "result": json.dumps(str(exc))}]}
        else:
            inst.input = reply.get("entityState") if reply.get("entityExists") else None
        results = reply.get("results") or [{"isError": True, "result": json.dumps("no result")}]
        result = results[0]
    inst.status = "Running"
    inst.last_updated_time = ts(now)
    if not request.get("signal") and request.get("parent"):
        body = p.event(p.Ev.EVENT_RAISED, now, Name=request["id"], Input=p.entity_response(result))
        ep.sends.append(
            Send(
                str(request["parent"]),
                NewMessage("event", ts(now), body),
                execution_id=request.get("parentExecution"),
            )
        )
    log.debug("entity %s: %s", inst.instance_id, request.get("op"))
    return ep


def _allocate(inst: Instance) -> int:
    task_id = inst.next_seq
    inst.next_seq += 1
    return task_id


def _complete(ep: Episode, now: datetime, output: Any) -> None:
    inst = ep.instance
    inst.status = "Completed"
    inst.output = json.dumps(output)
    ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
    ep.events.append(
        p.event(p.Ev.EXECUTION_COMPLETED, now, OrchestrationStatus="Completed", Result=inst.output)
    )
    ep.activities, ep.messages, ep.drop_pending = [], [], True


def _fail(ep: Episode, now: datetime, error: str) -> None:
    inst = ep.instance
    inst.status = "Failed"
    inst.output = json.dumps(f"Orchestrator function '{inst.name}' failed: {error}")
    ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
    ep.events.append(
        p.event(p.Ev.EXECUTION_COMPLETED, now, OrchestrationStatus="Failed", Result=inst.output)
    )
    ep.activities, ep.messages, ep.drop_pending = [], [], True
    log.warning("instance %s of %s failed", inst.instance_id, inst.name)


def _continue_as_new(ep: Episode, now: datetime, action: dict[str, Any]) -> None:
    """Start a fresh execution: new history and input, nothing else carried over."""
    inst = ep.instance
    inst.execution_id = uuid.uuid4().hex
    inst.input = json.dumps(action.get("input"))
    inst.next_seq = 0
    inst.tasks = {}
    inst.output = None
    ep.events = []
    ep.reset_history = True
    ep.drop_pending = True
    ep.activities = []
    ep.cancel_timers = []
    ep.messages = [NewMessage("start", ts(now), {})]


def _timer_message(timer_id: int, fire_at: str, now: datetime) -> NewMessage:
    body = p.event(p.Ev.TIMER_FIRED, now, TimerId=timer_id, FireAt=fire_at)
    return NewMessage("timer", fire_at, body, task_id=timer_id)


def _name(ev: dict[str, Any]) -> str:
    try:
        return p.Ev(ev["EventType"]).name
    except ValueError:
        return str(ev["EventType"])
