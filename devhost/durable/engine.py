"""An offline Durable Functions backend that drives the SDK's real replay entry points.

The orchestrator functions run through the very handle the Python worker calls (context JSON
in, orchestrator state JSON out), so the app code behaves as under the Durable extension. The
engine plays the extension's part: it builds histories the same shape, runs activities, keeps
retries and timers host-side, and persists every step in SQLite.

Each orchestration episode consumes exactly one inbox message. The SDK allocates sequence
numbers both when user code yields and when a retry's failure or timer is processed; with one
new event per episode those never mix, so the host can follow the numbering without peeking
into SDK internals.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from . import _protocol as p
from .clock import Clock, SystemClock, wait_until
from .store import (
    TERMINAL,
    ActivityItem,
    Episode,
    Instance,
    NewActivity,
    NewMessage,
    Query,
    Store,
    parse_ts,
    ts,
)

log = logging.getLogger("devhost.durable")

ACTIVE = frozenset({"Pending", "Running", "Suspended"})
_WAKE_CAP = 1.0  # seconds; bounds a lost wake-up, it is not a poll interval
_STOP_GRACE = 0.5


class NonDeterministicOrchestrationError(RuntimeError):
    """Raised inside the engine when a replay no longer matches the recorded history."""


class UnknownOrchestratorError(ValueError):
    """start_new named a function that is not an orchestrator of this app."""


@dataclass(frozen=True)
class _Activity:
    fn: Callable[..., Any]
    param: str


@dataclass
class _Outcome:
    """What one run of the orchestrator said, reduced to what the engine acts on."""

    replayed: bool  # False when the SDK failed without reporting its actions
    done: bool
    leaves: list[dict[str, Any]]
    output: Any
    custom_status: Any
    error: str | None


class DurableEngine:
    """Runs the orchestrators and activities of one function app against a SQLite file."""

    def __init__(
        self,
        functions: Sequence[Any],
        db_path: str,
        *,
        clock: Clock | None = None,
        task_hub: str = "dsrexport",
        workers: int = 2,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.task_hub = task_hub
        self.clock: Clock = clock or SystemClock()
        self._db_path = db_path
        self._workers = workers
        self._orchestrators: dict[str, Callable[[str], str]] = {}
        self._activities: dict[str, _Activity] = {}
        for fn in functions:
            kind = getattr(fn.get_trigger(), "type", None)
            if kind == "orchestrationTrigger":
                self._orchestrators[fn.get_function_name()] = fn.get_user_function()
            elif kind == "activityTrigger":
                self._activities[fn.get_function_name()] = _Activity(
                    fn.get_user_function(), _activity_param(fn)
                )
        self._cv = threading.Condition()
        self._store: Store | None = None
        self._threads: list[threading.Thread] = []
        self._claimed: set[int] = set()
        self._stopping = False
        self.clock.on_jump(self._wake)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._store is not None:
            raise RuntimeError("engine already started")
        self._store = Store(self._db_path)
        latest = self._store.latest_update()
        if latest is not None and parse_ts(latest) > self.clock.now():
            log.warning(
                "clock is behind the store (%s): timers wait longer and orchestration time "
                "only resumes once the clock catches up; start the clock from the last run's now",
                latest,
            )
        self._stopping = False
        self._claimed = set()
        self._threads = [
            threading.Thread(target=self._orchestration_loop, name="df-orch", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._activity_loop, name=f"df-act-{i}", daemon=True)
            for i in range(self._workers)
        ]
        for t in self._threads:
            t.start()
        log.info("durable engine started on %s (task hub %s)", self._db_path, self.task_hub)

    def stop(self) -> None:
        """Stop dispatching and release the file; activities still running are abandoned.

        An abandoned activity's result is discarded and its work item stays in the store, so
        the next engine runs it again: at-least-once, as in Azure.
        """
        store = self._store
        if store is None:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        deadline = time.monotonic() + _STOP_GRACE
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.05))
        self._threads = []
        self._store = None
        store.close()
        with self._cv:
            self._cv.notify_all()
        log.info("durable engine stopped")

    def __enter__(self) -> DurableEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def orchestrator_names(self) -> frozenset[str]:
        return frozenset(self._orchestrators)

    # -- client operations (what the Durable HTTP API maps to) ------------------------------

    def start_new(
        self, name: str, instance_id: str | None = None, input_json: str | None = None
    ) -> str:
        """Create an instance; ``input_json`` is the input value as JSON text.

        Raises ``InstanceExistsError`` for an id that is still active, like the extension.
        """
        if name not in self._orchestrators:
            raise UnknownOrchestratorError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                "function. Additional info: the following are the known orchestrator "
                f"functions: {', '.join(sorted(self._orchestrators))}"
            )
        instance_id = instance_id or uuid.uuid4().hex
        now = ts(self.clock.now())
        inst = Instance(
            instance_id=instance_id,
            name=name,
            execution_id=uuid.uuid4().hex,
            status="Pending",
            input=input_json if input_json is not None else "null",
            output=None,
            custom_status=None,
            created_time=now,
            last_updated_time=now,
        )
        self._require_store().create_instance(inst, NewMessage("start", now, {}))
        log.info("instance %s of %s scheduled", instance_id, name)
        self._wake()
        return instance_id

    def raise_event(self, instance_id: str, event_name: str, data_json: str = "null") -> str | None:
        """Queue an event; returns the instance status seen (None if it does not exist)."""
        body = p.event(p.Ev.EVENT_RAISED, self.clock.now(), Name=event_name, Input=data_json)
        return self._send(instance_id, NewMessage("event", ts(self.clock.now()), body))

    def terminate(self, instance_id: str, reason: str) -> str | None:
        return self._send(
            instance_id, NewMessage("terminate", ts(self.clock.now()), {"reason": reason})
        )

    def suspend(self, instance_id: str, reason: str) -> str | None:
        return self._send(
            instance_id, NewMessage("suspend", ts(self.clock.now()), {"reason": reason})
        )

    def resume(self, instance_id: str, reason: str) -> str | None:
        return self._send(
            instance_id, NewMessage("resume", ts(self.clock.now()), {"reason": reason})
        )

    def purge(self, instance_ids: Iterable[str]) -> int:
        """Delete terminal instances with their history; active ones are left alone."""
        deleted = self._require_store().purge(list(instance_ids))
        self._wake()
        return deleted

    def get_status(self, instance_id: str) -> Instance | None:
        return self._require_store().get_instance(instance_id)

    def query(self, q: Query) -> list[Instance]:
        return self._require_store().query(q)

    def get_history(self, instance_id: str) -> list[dict[str, Any]]:
        return self._require_store().history(instance_id)

    def wait_for(
        self, instance_id: str, statuses: Iterable[str] = TERMINAL, timeout: float = 10.0
    ) -> Instance:
        """Block until the instance reaches one of ``statuses`` (real-time ``timeout``)."""
        wanted = frozenset(statuses)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                inst = self._require_store().get_instance(instance_id)
                if inst is not None and inst.status in wanted:
                    return inst
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = inst.status if inst else "missing"
                    raise TimeoutError(
                        f"instance {instance_id} still {seen} after {timeout}s; "
                        f"wanted {sorted(wanted)}"
                    )
                self._cv.wait(min(remaining, _WAKE_CAP))

    # -- internals ---------------------------------------------------------------------------

    def _require_store(self) -> Store:
        store = self._store
        if store is None:
            raise RuntimeError("durable engine is not started")
        return store

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _send(self, instance_id: str, msg: NewMessage) -> str | None:
        status = self._require_store().send(instance_id, msg, allow=ACTIVE)
        self._wake()
        return status

    def _orchestration_loop(self) -> None:
        while True:
            with self._cv:
                if self._stopping:
                    return
                store = self._store
                if store is None:
                    return
                msg = store.next_message(ts(self.clock.now()))
                if msg is None:
                    due = store.next_due()
                    wait_until(self._cv, self.clock, parse_ts(due) if due else None, _WAKE_CAP)
                    continue
            try:
                self._handle_message(store, msg)
            except Exception:
                if self._stopping or store.closed:
                    return
                log.exception("orchestration message %s for %s failed", msg.kind, msg.instance_id)
                store.drop_message(msg.id)
            self._wake()

    def _activity_loop(self) -> None:
        while True:
            with self._cv:
                if self._stopping:
                    return
                store = self._store
                if store is None:
                    return
                item = store.next_activity(sorted(self._claimed))
                if item is None:
                    self._cv.wait(_WAKE_CAP)
                    continue
                self._claimed.add(item.id)
            result = self._run_activity(item)
            with self._cv:
                if self._stopping or store.closed:
                    return  # abandoned: the work item stays for the next engine
                try:
                    store.complete_activity(item, result)
                finally:
                    self._claimed.discard(item.id)
                self._cv.notify_all()

    def _run_activity(self, item: ActivityItem) -> NewMessage:
        now = self.clock.now()
        act = self._activities.get(item.name)
        try:
            if act is None:
                raise LookupError(
                    f"The function '{item.name}' doesn't exist, is disabled, or is not an "
                    "activity function."
                )
            datum = meta.Datum(type="json", value=item.input if item.input is not None else "null")
            value = ActivityTriggerConverter.decode(datum, trigger_metadata=None)
            result = act.fn(**{act.param: value})
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            encoded = ActivityTriggerConverter.encode(result, expected_type=None).value
            body = p.event(p.Ev.TASK_COMPLETED, now, TaskScheduledId=item.task_id, Result=encoded)
            log.info("activity %s for %s completed", item.name, item.instance_id)
        except Exception as exc:  # noqa: BLE001 - any activity error becomes TaskFailed, as in Azure
            body = p.event(
                p.Ev.TASK_FAILED,
                now,
                TaskScheduledId=item.task_id,
                Reason=str(exc) or type(exc).__name__,
                Details=type(exc).__name__,
            )
            log.info("activity %s for %s failed", item.name, item.instance_id)
        return NewMessage("event", ts(self.clock.now()), body)

    def _handle_message(self, store: Store, msg: Any) -> None:
        inst = store.get_instance(msg.instance_id)
        now = self.clock.now()
        if inst is None:
            store.drop_message(msg.id)
            return
        if msg.kind in ("terminate", "suspend", "resume"):
            self._control(store, inst, msg, now)
            return
        if inst.status in TERMINAL or msg.execution_id != inst.execution_id:
            store.drop_message(msg.id)
            return
        self._episode(store, inst, msg, now)

    def _control(self, store: Store, inst: Instance, msg: Any, now: datetime) -> None:
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
            store.drop_message(msg.id)
            return
        inst.last_updated_time = ts(now)
        store.commit_episode(ep)
        log.info("instance %s %s", inst.instance_id, inst.status.lower())

    def _episode(self, store: Store, inst: Instance, msg: Any, now: datetime) -> None:
        history = store.history(inst.instance_id)
        if msg.kind == "start":
            if history:
                store.drop_message(msg.id)
                return
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
            incoming = dict(msg.body, Timestamp=ts(now), IsPlayed=False)
            new = [p.event(p.Ev.ORCHESTRATOR_STARTED, now), incoming]
        ep = Episode(instance=inst, consumed_message=msg.id, events=list(new))
        entry = self._orchestrators.get(inst.name)
        if entry is None:
            self._finish_failed(
                ep, now, f"orchestrator '{inst.name}' is not registered in this host"
            )
            store.commit_episode(ep)
            return
        outcome = self._run_orchestrator(entry, inst, history, new)
        if outcome.custom_status is not None:
            inst.custom_status = json.dumps(outcome.custom_status)
        else:
            inst.custom_status = None
        inst.status = "Running"
        inst.last_updated_time = ts(now)
        try:
            self._apply_actions(ep, history, outcome, msg, now)
        except NonDeterministicOrchestrationError as exc:
            log.error("instance %s: %s", inst.instance_id, exc)
            self._finish_failed(ep, now, str(exc))
            store.commit_episode(ep)
            return
        can = next(
            (a for a in outcome.leaves if a.get("actionType") == p.Act.CONTINUE_AS_NEW), None
        )
        if outcome.error is not None:
            self._finish_failed(ep, now, outcome.error)
        elif outcome.done and can is not None:
            self._continue_as_new(ep, now, can)
        elif outcome.done:
            ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
            ep.events.append(
                p.event(
                    p.Ev.EXECUTION_COMPLETED,
                    now,
                    OrchestrationStatus="Completed",
                    Result=json.dumps(outcome.output),
                )
            )
            inst.status = "Completed"
            inst.output = json.dumps(outcome.output)
            ep.activities, ep.messages, ep.drop_pending = [], [], True
        else:
            ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
        store.commit_episode(ep)
        log.info(
            "instance %s of %s: %s -> %s",
            inst.instance_id,
            inst.name,
            _event_name(new[-1]),
            inst.status,
        )

    def _run_orchestrator(
        self,
        entry: Callable[[str], str],
        inst: Instance,
        history: list[dict[str, Any]],
        new: list[dict[str, Any]],
    ) -> _Outcome:
        played = [dict(e, IsPlayed=True) for e in history]
        context = {
            "history": played + new,
            "instanceId": inst.instance_id,
            "isReplaying": bool(history),
            "parentInstanceId": None,
            "input": json.loads(inst.input) if inst.input is not None else None,
            "upperSchemaVersion": 2,
        }
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
        self,
        ep: Episode,
        history: list[dict[str, Any]],
        outcome: _Outcome,
        msg: Any,
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
            if e["EventType"] in (p.Ev.TASK_SCHEDULED, p.Ev.TIMER_CREATED)
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
        self._retry_step(ep, msg.body, aux, roots, now)
        for action in emitted[len(recorded) :]:
            self._schedule(ep, action, roots, now)

    def _retry_step(
        self,
        ep: Episode,
        body: dict[str, Any],
        aux: dict[str, int],
        roots: dict[str, dict[str, Any]],
        now: datetime,
    ) -> None:
        """Host-side retries, in the history shape ``RetryAbleTask`` replays."""
        inst = ep.instance
        kind = body.get("EventType")
        if kind == p.Ev.TASK_FAILED:
            failed_id = str(body.get("TaskScheduledId"))
            root = failed_id if failed_id in roots else str(aux.get(failed_id, ""))
            if root not in roots:
                return
            delay = timedelta(milliseconds=int(roots[root]["interval_ms"]))
            timer_id = self._allocate(inst)
            fire_at = ts(now + delay)
            aux[str(timer_id)] = int(root)
            ep.events.append(p.event(p.Ev.TIMER_CREATED, now, timer_id, FireAt=fire_at))
            ep.messages.append(_timer_message(timer_id, fire_at, now))
        elif kind == p.Ev.TIMER_FIRED:
            fired_id = str(body.get("TimerId"))
            if fired_id not in aux:
                return
            root_state = roots[str(aux[fired_id])]
            if root_state["attempts"] >= root_state["max"]:
                return
            root_state["attempts"] += 1
            task_id = self._allocate(inst)
            aux[str(task_id)] = aux[fired_id]
            ep.events.append(p.event(p.Ev.TASK_SCHEDULED, now, task_id, Name=root_state["name"]))
            ep.activities.append(NewActivity(task_id, root_state["name"], root_state["input"]))

    def _schedule(
        self, ep: Episode, action: dict[str, Any], roots: dict[str, dict[str, Any]], now: datetime
    ) -> None:
        kind = action.get("actionType")
        task_id = self._allocate(ep.instance)
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
        elif kind == p.Act.CREATE_TIMER:
            fire_at = ts(datetime.fromisoformat(str(action["fireAt"])))
            ep.events.append(p.event(p.Ev.TIMER_CREATED, now, task_id, FireAt=fire_at))
            if not action.get("isCanceled"):
                ep.messages.append(_timer_message(task_id, fire_at, now))

    @staticmethod
    def _allocate(inst: Instance) -> int:
        task_id = inst.next_seq
        inst.next_seq += 1
        return task_id

    def _finish_failed(self, ep: Episode, now: datetime, error: str) -> None:
        inst = ep.instance
        message = f"Orchestrator function '{inst.name}' failed: {error}"
        ep.events.append(p.event(p.Ev.ORCHESTRATOR_COMPLETED, now))
        ep.events.append(
            p.event(
                p.Ev.EXECUTION_COMPLETED,
                now,
                OrchestrationStatus="Failed",
                Result=json.dumps(message),
            )
        )
        inst.status = "Failed"
        inst.output = json.dumps(message)
        inst.last_updated_time = ts(now)
        ep.activities, ep.messages, ep.drop_pending = [], [], True
        log.warning("instance %s of %s failed", inst.instance_id, inst.name)

    def _continue_as_new(self, ep: Episode, now: datetime, action: dict[str, Any]) -> None:
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
        ep.messages = [NewMessage("start", ts(now), {})]
        ep.cancel_timers = []


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _timer_message(timer_id: int, fire_at: str, now: datetime) -> NewMessage:
    body = p.event(p.Ev.TIMER_FIRED, now, TimerId=timer_id, FireAt=fire_at)
    return NewMessage("timer", fire_at, body, task_id=timer_id)


def _event_name(ev: dict[str, Any]) -> str:
    try:
        return p.Ev(ev["EventType"]).name
    except ValueError:
        return str(ev["EventType"])


def _activity_param(fn: Any) -> str:
    for raw in fn.get_raw_bindings():
        binding = json.loads(raw)
        if binding.get("type") == "activityTrigger":
            return str(binding["name"])
    raise ValueError(f"activity {fn.get_function_name()} has no activityTrigger binding")
