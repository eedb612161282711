"""An offline Durable Functions backend that drives the SDK's real replay entry points.

The orchestrator functions run through the very handle the Python worker calls (context JSON
in, orchestrator state JSON out), so the app code behaves as under the Durable extension. The
engine plays the extension's part: it builds histories the same shape, runs activities, keeps
retries and timers host-side, and persists every step in SQLite.

Threads: one dispatcher runs orchestration episodes one at a time (like a single partition,
so no two episodes of an instance ever race) and ``workers`` threads run activities.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost._service import Service
from testsupport import durable_protocol as p
from testsupport.durable_protocol import parse_ts, ts

from ._episode import ACTIVE, CONTROL, control, entity_operation, replay
from .clock import Clock, SystemClock, wait_until
from .store import (
    TERMINAL,
    ActivityItem,
    Episode,
    Instance,
    Message,
    NewMessage,
    Query,
    Store,
)

log = logging.getLogger("devhost.durable")

_WAKE_CAP = 1.0  # seconds; bounds a lost wake-up, it is not a poll interval
_STOP_GRACE = 0.5
_MAX_INSTANCE_ID = 256


class UnknownOrchestratorError(ValueError):
    """start_new named a function that is not an orchestrator of this app."""


@dataclass(frozen=True)
class _Activity:
    fn: Callable[..., Any]
    param: str


class DurableEngine(Service):
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
        self._entities: dict[str, Callable[[str], str]] = {}
        for fn in functions:
            kind = getattr(fn.get_trigger(), "type", None)
            if kind == "orchestrationTrigger":
                self._orchestrators[fn.get_function_name()] = fn.get_user_function()
            elif kind == "entityTrigger":
                # Entity ids carry the name in lower case (``EntityId.get_scheduler_id``).
                self._entities[fn.get_function_name().lower()] = fn.get_user_function()
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

    # -- client operations (what the Durable HTTP API maps to) ------------------------------

    def start_new(
        self, name: str, instance_id: str | None = None, input_json: str | None = None
    ) -> str:
        """Create an instance; ``input_json`` is the request body of the HTTP API, as is.

        The SDK client sends its input JSON-encoded inside a JSON string, and the extension
        keeps it that way (``get_input()`` decodes it once more); pass the same shape here.
        Raises ``InstanceExistsError`` for an id that is still active, like the extension.
        """
        if name not in self._orchestrators:
            raise UnknownOrchestratorError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                "function. Additional info: the following are the known orchestrator "
                f"functions: {', '.join(sorted(self._orchestrators))}"
            )
        if instance_id is not None:
            _check_instance_id(instance_id)
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

    def query(self, q: Query, *, limit: int | None = None, offset: int = 0) -> list[Instance]:
        return self._require_store().query(q, limit=limit, offset=offset)

    def entity_state(self, name: str, key: str) -> Any:
        """The entity's state as its function last set it (None: it does not exist)."""
        inst = self._require_store().get_instance(f"@{name.lower()}@{key}")
        return None if inst is None or inst.input is None else json.loads(inst.input)

    def get_history(self, instance_id: str) -> list[dict[str, Any]]:
        return self._require_store().history(instance_id)

    def wait_for(
        self, instance_id: str, statuses: Iterable[str] = TERMINAL, timeout: float = 10.0
    ) -> Instance:
        """Block until the instance reaches one of ``statuses`` (real-time ``timeout``)."""
        wanted = frozenset({statuses} if isinstance(statuses, str) else statuses)
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
                store.fail_instance(
                    msg.instance_id,
                    msg.id,
                    f"devhost durable engine error while processing {msg.kind}; see the host log",
                    ts(self.clock.now()),
                )
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
            log.debug("activity %s for %s completed", item.name, item.instance_id)
        except Exception as exc:  # noqa: BLE001 - any activity error becomes TaskFailed, as in Azure
            # The extension's wording around the worker's "Type: message"
            body = p.event(
                p.Ev.TASK_FAILED,
                now,
                TaskScheduledId=item.task_id,
                Reason=f"Activity function '{item.name}' failed: {type(exc).__name__}: {exc}",
                Details=type(exc).__name__,
            )
            log.info("activity %s for %s failed", item.name, item.instance_id)
        return NewMessage("event", ts(self.clock.now()), body)

    def _handle_message(self, store: Store, msg: Message) -> None:
        inst = store.get_instance(msg.instance_id)
        now = self.clock.now()
        ep: Episode | None = None
        if inst is not None and msg.kind == "entity":
            name = inst.instance_id.split("@", 2)[1]
            ep = entity_operation(self._entities.get(name), inst, msg, now)
        elif inst is not None and msg.kind in CONTROL:
            ep = control(inst, msg, now)
        elif inst is not None:
            history = store.history(inst.instance_id)
            ep = replay(self._orchestrators.get(inst.name), inst, history, msg, now)
        if ep is None:
            store.drop_message(msg.id)
        else:
            store.commit_episode(ep)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _check_instance_id(instance_id: str) -> None:
    """The extension's rules, so an id that works here also works in Azure."""
    if not instance_id:
        raise ValueError("instance ids must not be empty")
    if instance_id.startswith("@"):
        raise ValueError("Orchestration instance ids must not start with @.")
    if any(c in "/\\#?" or unicodedata.category(c) == "Cc" for c in instance_id):
        raise ValueError(
            "Orchestration instance ids must not contain /, \\, #, ?, or control characters."
        )
    if len(instance_id) > _MAX_INSTANCE_ID:
        raise ValueError(f"Instance ID lengths must not exceed {_MAX_INSTANCE_ID} characters.")


def _activity_param(fn: Any) -> str:
    for raw in fn.get_raw_bindings():
        binding = json.loads(raw)
        if binding.get("type") == "activityTrigger":
            return str(binding["name"])
    raise ValueError(f"activity {fn.get_function_name()} has no activityTrigger binding")
