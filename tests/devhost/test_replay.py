"""The replay driver drives any app's orchestrator it is handed, step by step, through the SDK."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.devhost import toy_app
from testsupport.replay import START, Ev, Kind, ReplayDriver, ReplayError, user_functions

ENTRIES = user_functions(toy_app.make_app(1).get_functions())


def _driver(name: str, payload: object) -> ReplayDriver:
    return ReplayDriver(ENTRIES[name], name, payload)


def test_activities_are_answered_in_order_and_the_result_is_the_orchestrators():
    d = _driver("seq_orch", {"names": ["ada", "bob"]})
    d.episode()
    assert [(a.kind, a.name, a.input) for a in d.actions] == [(Kind.ACTIVITY, "greet", "ada")]
    d.complete("hi ada", name="greet")
    reply = d.complete("hi bob", name="greet")
    assert reply["isDone"] is True
    assert reply["output"] == ["hi ada", "hi bob"]
    assert reply["customStatus"] == {"done": 2}
    assert [a.input for a in d.activities("greet")] == ["ada", "bob"]
    episode = [Ev.ORCHESTRATOR_COMPLETED, Ev.ORCHESTRATOR_STARTED, Ev.TASK_COMPLETED]
    assert [e["EventType"] for e in d.history] == [
        Ev.ORCHESTRATOR_STARTED,
        Ev.EXECUTION_STARTED,
        Ev.TASK_SCHEDULED,
        *episode,
        Ev.TASK_SCHEDULED,
        *episode,
    ]
    assert all(e["IsPlayed"] for e in d.history), "all of it replayed in the last episode"


def test_a_failed_attempt_waits_the_retry_interval_on_the_drivers_clock():
    d = _driver("retry_orch", {"attempts": 2, "key": "k", "fail_times": 1})
    d.episode()
    assert d.pending().retry is not None
    d.fail_attempt("ValueError: flaky failure 1")
    assert d.now == START + timedelta(seconds=60)
    assert d.pending().name == "flaky", "the second attempt"
    d.complete("ok after 2")
    reply = d.complete("hello after-retry", name="greet")
    assert reply["output"] == {
        "result": "ok after 2",
        "waited_s": 60.0,
        "next": "hello after-retry",
    }


def test_a_timer_fires_at_its_time_and_an_event_wins_a_race():
    d = _driver("timer_orch", {"days": 2})
    d.episode()
    reply = d.fire_timer()
    assert d.now == START + timedelta(days=2)
    assert reply["output"]["now"] == d.now.isoformat()

    d = _driver("event_orch", None)
    d.episode()
    assert {a.kind for a in d.actions} == {Kind.EVENT, Kind.TIMER}
    reply = d.raise_event("approval", {"by": "ops"})
    # as sent by the SDK client: the extension's double encoding reaches the orchestrator as text
    assert reply["output"] == {"approved": '{"by": "ops"}'}


def test_continue_as_new_starts_a_fresh_history_with_the_new_input():
    d = _driver("can_orch", {"n": 0, "limit": 1})
    d.episode()
    d.complete("hello 0")
    assert d.actions[-1].kind == Kind.CONTINUE_AS_NEW
    d.continue_as_new()
    assert d.input == {"n": 1, "limit": 1}
    assert [e["EventType"] for e in d.history[:2]] == [
        Ev.ORCHESTRATOR_STARTED,
        Ev.EXECUTION_STARTED,
    ]
    assert d.complete("hello 1")["output"] == {"n": 1}


def test_asking_for_a_step_the_orchestrator_is_not_waiting_for_says_so():
    d = _driver("seq_orch", {"names": ["ada"]})
    d.episode()
    with pytest.raises(ReplayError, match="not greeting"):
        d.complete("x", name="greeting")
    with pytest.raises(ReplayError, match="not a timer"):
        d.fire_timer()
    with pytest.raises(ReplayError, match="without retry options"):
        d.fail_attempt("boom")
    d.complete("hi")
    with pytest.raises(ReplayError, match="nothing is open"):
        d.pending()


def test_a_sub_orchestration_is_refused_by_name():
    d = _driver("sub_orch", None)
    with pytest.raises(ReplayError, match="CALL_SUB_ORCHESTRATOR"):
        d.episode()
