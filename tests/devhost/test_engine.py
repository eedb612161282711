"""The durable engine runs real orchestrators through the SDK's replay, as the extension would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.durable import DurableEngine, FastClock, StoreLockedError
from devhost.durable.store import Query
from tests.devhost import toy_app
from testsupport.durable_protocol import Ev

APP1 = toy_app.make_app(1).get_functions()
APP2 = toy_app.make_app(2).get_functions()
FAST = 1e6  # one real millisecond is ~17 virtual minutes
ACTIVE = {"Pending", "Running"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sdk_input(value: Any) -> str:
    """The stored input as the SDK client sends it: JSON text of JSON text."""
    return json.dumps(json.dumps(value))


def poll(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


def types(history: list[dict[str, Any]]) -> list[int]:
    return [e["EventType"] for e in history]


@pytest.fixture
def db(tmp_path: Any) -> str:
    return str(tmp_path / "durable.db")


@pytest.fixture
def engine(db: str) -> Iterator[DurableEngine]:
    with DurableEngine(APP1, db, clock=FastClock(speed=FAST)) as eng:
        yield eng


def test_activity_sequence_output_custom_status_and_history_shape(engine: DurableEngine) -> None:
    iid = engine.start_new("seq_orch", "seq-1", sdk_input({"names": ["ann", "bob"]}))

    inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    assert json.loads(inst.output or "") == ["hello ann", "hello bob"]
    assert json.loads(inst.custom_status or "") == {"done": 2}
    history = engine.get_history(iid)
    assert types(history[:2]) == [Ev.ORCHESTRATOR_STARTED, Ev.EXECUTION_STARTED]
    assert history[1]["Name"] == "seq_orch"
    scheduled = [e for e in history if e["EventType"] == Ev.TASK_SCHEDULED]
    assert [(e["EventId"], e["Name"]) for e in scheduled] == [(0, "greet"), (1, "greet")]
    starts = [e["Timestamp"] for e in history if e["EventType"] == Ev.ORCHESTRATOR_STARTED]
    assert starts == sorted(starts)
    assert len(set(starts)) == 3


def test_fan_out_fan_in(engine: DurableEngine) -> None:
    iid = engine.start_new("fanout_orch", None, sdk_input({"names": ["a", "b", "c"]}))

    inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    assert json.loads(inst.output or "") == ["hello a", "hello b", "hello c"]


def test_retry_succeeds_on_third_attempt_with_extension_history_shape(
    engine: DurableEngine,
) -> None:
    args = {"key": "retry-ok", "fail_times": 2, "attempts": 3}
    iid = engine.start_new("retry_orch", None, sdk_input(args))

    inst = engine.wait_for(iid)

    assert inst.status == "Completed", inst.output
    out = json.loads(inst.output or "")
    assert out["result"] == "ok after 3"
    assert out["next"] == "hello after-retry"
    assert out["waited_s"] >= 120  # two 60 s retry timers on the virtual clock
    assert toy_app.CALLS["retry-ok"] == 3
    work = [
        (
            e["EventType"],
            e.get("EventId") if e["EventId"] >= 0 else e.get("TaskScheduledId", e.get("TimerId")),
        )
        for e in engine.get_history(iid)
        if e["EventType"]
        in (Ev.TASK_SCHEDULED, Ev.TASK_COMPLETED, Ev.TASK_FAILED, Ev.TIMER_CREATED, Ev.TIMER_FIRED)
    ]
    assert work == [
        (Ev.TASK_SCHEDULED, 0),
        (Ev.TASK_FAILED, 0),
        (Ev.TIMER_CREATED, 1),
        (Ev.TIMER_FIRED, 1),
        (Ev.TASK_SCHEDULED, 2),
        (Ev.TASK_FAILED, 2),
        (Ev.TIMER_CREATED, 3),
        (Ev.TIMER_FIRED, 3),
        (Ev.TASK_SCHEDULED, 4),
        (Ev.TASK_COMPLETED, 4),
        (Ev.TASK_SCHEDULED, 5),
        (Ev.TASK_COMPLETED, 5),
    ]


def test_retry_exhausted_fails_orchestration_with_the_activity_message(
    engine: DurableEngine,
) -> None:
    args = {"key": "retry-bad", "fail_times": 99, "attempts": 3}
    iid = engine.start_new("retry_orch", None, sdk_input(args))

    inst = engine.wait_for(iid)

    assert inst.status == "Failed"
    assert "flaky failure 3" in json.loads(inst.output or "")
    assert toy_app.CALLS["retry-bad"] == 3
    history = engine.get_history(iid)
    last_failure = max(i for i, e in enumerate(history) if e["EventType"] == Ev.TASK_FAILED)
    # the extension's extra timer after the last attempt, without which replay would hang
    assert Ev.TIMER_FIRED in types(history[last_failure:])


def test_three_day_timer_runs_in_well_under_a_second(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock(speed=1e7)) as engine:
        started = time.monotonic()
        iid = engine.start_new("timer_orch", None, sdk_input({"days": 3}))
        inst = engine.wait_for(iid, timeout=5)
        elapsed = time.monotonic() - started

    assert inst.status == "Completed"
    assert elapsed < 1.0
    out = json.loads(inst.output or "")
    assert datetime.fromisoformat(out["now"]) >= datetime.fromisoformat(out["fire_at"])


def test_timer_beyond_the_storage_maximum_is_split_like_in_azure(engine: DurableEngine) -> None:
    iid = engine.start_new("timer_orch", None, sdk_input({"days": 14}))

    inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    out = json.loads(inst.output or "")
    assert datetime.fromisoformat(out["now"]) >= datetime.fromisoformat(out["fire_at"])
    timers = [e for e in engine.get_history(iid) if e["EventType"] == Ev.TIMER_CREATED]
    assert len(timers) >= 4  # 3-day slices, then the remainder


def test_continue_as_new_carries_input_and_resets_history(engine: DurableEngine) -> None:
    iid = engine.start_new("can_orch", "can-1", sdk_input({"n": 0, "limit": 3}))

    inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    assert json.loads(inst.output or "") == {"n": 3}
    history = engine.get_history(iid)
    assert types(history).count(Ev.EXECUTION_STARTED) == 1
    assert types(history).count(Ev.TASK_SCHEDULED) == 1
    assert json.loads(json.loads(history[1]["Input"])) == {"n": 3, "limit": 3}


def test_external_event_wins_over_the_timer(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock(speed=1.0)) as engine:
        iid = engine.start_new("event_orch", None, None)
        assert engine.raise_event(iid, "approval", json.dumps({"ok": True})) in ACTIVE

        inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    assert json.loads(inst.output or "") == {"approved": {"ok": True}}


# The SDK buffers an event nobody waits for yet, with this warning; Azure behaves the same.
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning")
def test_event_raised_before_the_orchestrator_waits_is_kept(engine: DurableEngine) -> None:
    toy_app.GATES["late"] = threading.Event()
    try:
        iid = engine.start_new("late_wait_orch", None, sdk_input("late"))
        poll(lambda: toy_app.CALLS["late"] == 1)
        assert engine.raise_event(iid, "approval", json.dumps("early")) == "Running"
    finally:
        toy_app.GATES["late"].set()

    inst = engine.wait_for(iid)

    assert json.loads(inst.output or "") == "early"


def test_terminate_stops_a_waiting_instance(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock(speed=1.0)) as engine:
        iid = engine.start_new("event_orch", None, None)
        running = engine.wait_for(iid, {"Running"})
        assert json.loads(running.custom_status or "") == "waiting"

        assert engine.terminate(iid, "operator said so") == "Running"
        inst = engine.wait_for(iid)

        assert inst.status == "Terminated"
        assert json.loads(inst.output or "") == "operator said so"
        assert engine.raise_event(iid, "approval") == "Terminated"  # gone: not delivered
        assert types(engine.get_history(iid))[-2] == Ev.EXECUTION_TERMINATED


def test_failing_orchestrator_records_its_error(engine: DurableEngine) -> None:
    iid = engine.start_new("failing_orch", None, None)

    inst = engine.wait_for(iid)

    assert inst.status == "Failed"
    assert json.loads(inst.output or "") == (
        "Orchestrator function 'failing_orch' failed: orchestrator exploded"
    )


def test_purge_deletes_only_finished_instances(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock(speed=FAST)) as engine:
        done = engine.start_new("seq_orch", None, sdk_input({"names": []}))
        waiting = engine.start_new("event_orch", None, None)
        engine.wait_for(done)
        engine.wait_for(waiting, {"Running"})

        assert engine.purge([done, waiting, "nobody"]) == 1

        assert engine.get_status(done) is None
        assert engine.get_history(done) == []
        assert engine.get_status(waiting) is not None


def test_divergence_after_code_change_fails_loudly(db: str) -> None:
    clock1 = FastClock(speed=1.0)
    with DurableEngine(APP1, db, clock=clock1) as engine:
        iid = engine.start_new("diverge_orch", None, None)
        poll(lambda: Ev.TIMER_CREATED in types(engine.get_history(iid)))

    clock2 = FastClock(speed=1.0, start=clock1.now())
    with DurableEngine(APP2, db, clock=clock2) as engine:
        clock2.advance(timedelta(hours=2))
        inst = engine.wait_for(iid)

    assert inst.status == "Failed"
    message = json.loads(inst.output or "")
    assert "NonDeterministicOrchestration" in message
    assert "'step_a'" in message
    assert "'step_a2'" in message


def test_restart_resumes_in_flight_instances(db: str) -> None:
    clock1 = FastClock(speed=1.0)
    with DurableEngine(APP1, db, clock=clock1) as engine:
        sleeper = engine.start_new("timer_orch", None, sdk_input({"days": 1}))
        poll(lambda: Ev.TIMER_CREATED in types(engine.get_history(sleeper)))

    with DurableEngine(APP1, db, clock=FastClock(speed=FAST, start=clock1.now())) as engine:
        inst = engine.wait_for(sleeper)

    assert inst.status == "Completed"


def test_activity_abandoned_by_a_stopped_host_runs_again(db: str) -> None:
    toy_app.GATES["gate-1"] = threading.Event()
    try:
        first = DurableEngine(APP1, db, clock=FastClock(speed=FAST))
        first.start()
        iid = first.start_new("gate_orch", None, sdk_input("gate-1"))
        poll(lambda: toy_app.CALLS["gate-1"] == 1)
        first.stop()  # the activity is still blocked: its result must not count
    finally:
        toy_app.GATES["gate-1"].set()

    with DurableEngine(APP1, db, clock=FastClock(speed=FAST)) as engine:
        inst = engine.wait_for(iid)

    assert inst.status == "Completed"
    assert json.loads(inst.output or "") == 2  # at-least-once: the second run's result


def test_two_engines_on_one_file_are_refused(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock()):
        second = DurableEngine(APP1, db, clock=FastClock())
        with pytest.raises(StoreLockedError, match="already used by another engine"):
            second.start()
    second.start()  # released on stop
    second.stop()


def test_starting_an_active_instance_id_is_refused(engine: DurableEngine) -> None:
    from devhost.durable import InstanceExistsError

    engine.start_new("event_orch", "dup", None)
    with pytest.raises(InstanceExistsError, match="already exists"):
        engine.start_new("event_orch", "dup", None)
    engine.terminate("dup", "done")
    engine.wait_for("dup")

    assert engine.start_new("seq_orch", "dup", sdk_input({"names": ["z"]})) == "dup"
    assert engine.wait_for("dup").name == "seq_orch"


_CHILD = """
import sys, time
from datetime import datetime
from devhost.durable import DurableEngine, FastClock
from testsupport.durable_protocol import Ev
from tests.devhost import toy_app

clock = FastClock(speed=1.0, start=datetime.fromisoformat(sys.argv[2]))
engine = DurableEngine(toy_app.make_app(1).get_functions(), sys.argv[1], clock=clock)
engine.start()
iid = engine.start_new("timer_orch", "killed", sys.argv[3])
while Ev.TIMER_CREATED not in [e["EventType"] for e in engine.get_history(iid)]:
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)
"""


def test_killed_host_process_releases_the_file_and_its_instances_resume(db: str) -> None:
    start = datetime.now(UTC)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db, start.isoformat(), sdk_input({"days": 1})],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=f"holder pid {child.pid}"):
            DurableEngine(APP1, db, clock=FastClock()).start()
    finally:
        child.kill()
        child.wait(10)

    clock = FastClock(speed=FAST, start=start + timedelta(minutes=1))
    with DurableEngine(APP1, db, clock=clock) as engine:
        inst = engine.wait_for("killed")

    assert inst.status == "Completed"


def test_suspend_holds_work_until_resume(db: str) -> None:
    clock = FastClock(speed=1.0)
    with DurableEngine(APP1, db, clock=clock) as engine:
        iid = engine.start_new("timer_orch", None, sdk_input({"days": 1}))
        poll(lambda: Ev.TIMER_CREATED in types(engine.get_history(iid)))
        engine.suspend(iid, "maintenance")
        engine.wait_for(iid, {"Suspended"})
        clock.advance(timedelta(days=2))
        with pytest.raises(TimeoutError):
            engine.wait_for(iid, timeout=0.2)

        engine.resume(iid, "done")
        inst = engine.wait_for(iid)

    assert inst.status == "Completed"


def test_external_event_timeout_path_when_the_timer_wins(db: str) -> None:
    clock = FastClock(speed=1.0)
    with DurableEngine(APP1, db, clock=clock) as engine:
        iid = engine.start_new("event_orch", None, None)
        poll(lambda: Ev.TIMER_CREATED in types(engine.get_history(iid)))
        clock.advance(timedelta(days=1, seconds=1))

        inst = engine.wait_for(iid)

    assert json.loads(inst.output or "") == "timed out"


def test_unsupported_api_fails_the_instance_by_name(engine: DurableEngine) -> None:
    iid = engine.start_new("sub_orch", None, None)

    inst = engine.wait_for(iid)

    assert inst.status == "Failed"
    assert "CALL_SUB_ORCHESTRATOR" in json.loads(inst.output or "")


def test_many_concurrent_instances_with_retries_and_fan_out(db: str) -> None:
    with DurableEngine(APP1, db, clock=FastClock(speed=FAST), workers=4) as engine:
        ids = [
            engine.start_new("fanout_orch", None, sdk_input({"names": [str(i), "x", "y"]}))
            for i in range(10)
        ]
        ids += [
            engine.start_new(
                "retry_orch", None, sdk_input({"key": f"many-{i}", "fail_times": 1, "attempts": 2})
            )
            for i in range(10)
        ]
        done = [engine.wait_for(i, timeout=20) for i in ids]

    assert {d.status for d in done} == {"Completed"}
    assert json.loads(done[3].output or "") == ["hello 3", "hello x", "hello y"]


def test_entity_operations_run_one_at_a_time_and_calls_get_the_state(db: str) -> None:
    """Signals from many orchestrations, then a call: no increment is lost to a race, the
    caller gets the entity's answer through the SDK's own call_entity replay."""
    with DurableEngine(APP1, db, clock=FastClock(speed=FAST), workers=2) as engine:
        ids = [
            engine.start_new("counter_orch", f"c-{n}", sdk_input({"key": "k", "adds": 5}))
            for n in range(8)
        ]
        done = [engine.wait_for(i) for i in ids]
        assert engine.entity_state("counter", "k") == 40
        totals = [json.loads(inst.output or "")["total"] for inst in done]
        history = engine.get_history(ids[0])
        listed = engine.query(Query())
    assert all(inst.status == "Completed" for inst in done)
    assert max(totals) == 40, "the last caller reads every increment"
    assert all(t >= 5 for t in totals), "a caller's own signals come before its call"
    assert types(history).count(Ev.EVENT_SENT) == 6, "five signals and one call"
    assert [i.instance_id for i in listed] == sorted(ids), "entities are not orchestrations"


def test_an_entity_operation_that_raises_fails_the_call_not_the_entity(
    engine: DurableEngine,
) -> None:
    iid = engine.start_new("counter_orch", None, sdk_input({"key": "e", "adds": 2, "read": "x"}))
    out = json.loads(engine.wait_for(iid).output or "")
    assert "no operation x" in out["error"]
    assert engine.entity_state("counter", "e") == 2


def test_entity_state_and_a_waiting_caller_survive_a_host_restart(db: str) -> None:
    clock1 = FastClock(speed=1.0)
    with DurableEngine(APP1, db, clock=clock1) as engine:
        iid = engine.start_new(
            "counter_orch", "r", sdk_input({"key": "r", "adds": 3, "wait_days": 1})
        )
        poll(lambda: engine.entity_state("counter", "r") == 3)

    with DurableEngine(APP1, db, clock=FastClock(speed=FAST, start=clock1.now())) as engine:
        inst = engine.wait_for(iid)
        state = engine.entity_state("counter", "r")
    assert json.loads(inst.output or "") == {"total": 3}
    assert state == 3
