"""The tenant's ``quotaBudget`` counts: its gate admits at most ``submitsPerDay`` submits in the
rolling 24 hours and its exports poll within nine tenths of ``pollsPerHour``.

The budget travels in the DSR's orchestration input (resolved at intake), then in each ``ask``
and ``pace`` to the tenant's gate; an input written before budgets counted replays as before
(the documented quotas). The pure rules at their boundaries, then the DSR through the SDK's
replay with the real gate entity.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dsr_export.domain import gate, pacing, steps
from dsr_export.domain.job import ExportJob
from tests import answers
from tests.replay import Driver, Kind

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SPAN = DAY + timedelta(seconds=gate.SLOT_MARGIN_SECONDS)
USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
TENANT = "2f7b3c1e-8d4a-4b6f-9e2d-1a3c5b7d9f0e"
GATE_KEY = f"@submit_gate@{TENANT}"


def _ask(
    state: gate.GateState, rid: str, at: datetime, budget: int | None = None
) -> tuple[gate.GateState, gate.GateAnswer]:
    due = (T0 + timedelta(days=30)).isoformat()
    asked = gate.Ask(rid, due, T0.isoformat(), at.isoformat(), submits_per_day=budget)
    return gate.ask(state, asked)


def _sent(state: gate.GateState, count: int, budget: int | None) -> gate.GateState:
    for n in range(count):
        state, answer = _ask(state, f"R{n}", T0 + timedelta(minutes=n), budget)
        assert answer.granted
    return state


def test_a_budget_of_3_a_day_lets_3_through_and_the_4th_waits_for_the_window() -> None:
    state = _sent(gate.GateState(), 3, budget=3)
    state, answer = _ask(state, "R4", T0 + timedelta(hours=1), budget=3)
    assert not answer.granted
    assert answer.ask_at is not None
    assert datetime.fromisoformat(answer.ask_at) == T0 + SPAN, "when the first is a day old"
    state, early = _ask(state, "R4", T0 + SPAN - timedelta(seconds=1), budget=3)
    assert not early.granted
    state, answer = _ask(state, "R4", T0 + SPAN, budget=3)
    assert answer.granted
    view = gate.view(state, (T0 + SPAN).isoformat(), TENANT)
    assert (view["submitBudget"], view["submitQuota"]) == (3, 1000)


def test_without_a_budget_the_gate_admits_the_documented_quota() -> None:
    state = _sent(gate.GateState(), 4, budget=None)
    assert gate.status(state)["free"] == gate.SUBMITS_PER_WINDOW - 4
    assert gate.view(state, T0.isoformat(), "home")["submitBudget"] == 1000


def test_the_latest_budget_heard_wins_a_dsr_without_one_keeps_it() -> None:
    state = _sent(gate.GateState(), 3, budget=5)
    state, answer = _ask(state, "R4", T0 + timedelta(hours=1), budget=3)
    assert not answer.granted, "lowered to 3: the window is full"
    state, answer = _ask(state, "R4", T0 + timedelta(hours=2), budget=None)
    assert not answer.granted, "a DSR that carries no budget leaves it as heard"
    state, answer = _ask(state, "R4", T0 + timedelta(hours=3), budget=4)
    assert answer.granted, "raised to 4"


def test_a_budget_never_lifts_the_gate_above_the_documented_quota() -> None:
    state, answer = _ask(gate.GateState(), "R1", T0, budget=5000)
    assert answer.granted
    assert gate.status(state)["free"] == gate.SUBMITS_PER_WINDOW - 1


def test_a_budget_lowered_below_the_window_waits_for_the_excess_to_leave() -> None:
    state = _sent(gate.GateState(), 5, budget=5)
    state, answer = _ask(state, "R6", T0 + timedelta(hours=1), budget=3)
    assert not answer.granted
    assert answer.ask_at is not None
    # Two over the budget: the third oldest's day must pass before one is free.
    assert datetime.fromisoformat(answer.ask_at) == T0 + timedelta(minutes=2) + SPAN
    _, answer = _ask(state, "R6", T0 + timedelta(minutes=2) + SPAN, budget=3)
    assert answer.granted


def test_the_subjects_100_a_day_holds_whatever_the_budget() -> None:
    state = gate.GateState(subjects={USER_ID: tuple(gate._iso(T0) for _ in range(100))})
    asked = gate.Ask("R1", None, None, T0.isoformat(), subject=USER_ID, submits_per_day=1000)
    _, answer = gate.ask(state, asked)
    assert not answer.granted


def test_the_budget_survives_the_gates_wire_forms() -> None:
    state, _ = _ask(gate.GateState(), "R1", T0, budget=3)
    assert gate.GateState.from_dict(json.loads(json.dumps(state.to_dict()))).submit_budget == 3
    assert gate.GateState.from_dict({"sent": []}).submit_budget is None, "a state before budgets"
    asked = gate.Ask("R1", None, None, T0.isoformat(), submits_per_day=3)
    assert gate.Ask.from_dict(asked.to_dict()) == asked
    assert gate.Ask.from_dict({"requestId": "R1", "now": T0.isoformat()}).submits_per_day is None
    paced = gate.PaceAsk("R1", T0.isoformat(), polls_per_hour=2000)
    assert gate.PaceAsk.from_dict(paced.to_dict()) == paced
    assert gate.PaceAsk.from_dict({"requestId": "R1"}).polls_per_hour is None


# -- the poll pacing ---------------------------------------------------------------------------


def test_polls_pace_within_nine_tenths_of_the_budget_never_above_the_default() -> None:
    assert pacing.poll_budget(None) == pacing.POLL_BUDGET_PER_HOUR == 9000
    assert pacing.poll_budget(10_000) == 9000
    assert pacing.poll_budget(5000) == 4500
    assert pacing.poll_budget(1) == 1
    assert pacing.budget_wait(4500, 5000) == 3600, "4,500 in flight: one poll an hour each"
    assert pacing.budget_wait(9000, 5000) == 7200
    assert pacing.budget_wait(9000, None) == pacing.budget_wait(9000) == 3600
    for in_flight in (1, 7, 4500, 4501, 12345):
        assert in_flight * 3600 / pacing.budget_wait(in_flight, 5000) <= 4500


def test_a_smaller_poll_budget_widens_the_waits_and_the_gates_lapse() -> None:
    assert pacing.paced_poll_wait("r1", 3, 3600, cap=3600, in_flight=9000) == 3600
    budgeted = pacing.paced_poll_wait("r1", 3, 3600, cap=3600, in_flight=9000, per_hour=5000)
    assert budgeted == pacing.budgeted_wait("r1", 3, 9000, 5000)
    assert 7200 <= budgeted < 7200 * 1.5
    assert pacing.first_poll_wait("r1", 60, 100, 200) == pacing.budgeted_wait("r1", 0, 100, 200)
    assert pacing.first_poll_wait("r1", 60, 100) == 60
    # 20,000 in flight at 2,000 an hour: each waits 10 hours, so the gate counts it longer.
    assert pacing.pace_lapse_seconds(20000, 3600, 2000) > pacing.pace_lapse_seconds(20000, 3600)


# -- the DSR, through the SDK's replay ---------------------------------------------------------


def _driver(job: ExportJob | dict[str, object], state: gate.GateState) -> Driver:
    raw = job.to_input() if isinstance(job, ExportJob) else job
    d = Driver("export_personal_data", raw, now=T0)
    d.entity_states[GATE_KEY] = json.dumps(state.to_dict())
    return d


def _job(**changes: object) -> ExportJob:
    job = ExportJob(
        request_id=f"{TENANT}:RITM0001",
        user=USER_ID,
        user_id=USER_ID,
        received_at=T0.isoformat(),
        legal_deadline=(T0 + timedelta(days=30)).isoformat(),
        tenant_id=TENANT,
    )
    return job.replace(**changes)


def _full(count: int) -> gate.GateState:
    return gate.GateState(sent=tuple(gate._iso(T0 - timedelta(hours=1)) for _ in range(count)))


def test_a_dsr_of_a_tenant_with_3_a_day_waits_behind_3_submits() -> None:
    d = _driver(_job(quota_budget={"submitsPerDay": 3, "pollsPerHour": 2000}), _full(3))
    d.episode()
    d.complete(answers.prepared(settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    assert d.entity_calls("ask")[-1].input["submitsPerDay"] == 3
    timer = d.pending()
    assert timer.kind == Kind.TIMER, "held back: the budget, not the quota, is spent"
    assert timer.fire_at == T0 - timedelta(hours=1) + SPAN


def test_the_poll_phase_carries_the_poll_budget_to_the_gate() -> None:
    d = _driver(_job(quota_budget={"submitsPerDay": 3, "pollsPerHour": 2000}), _full(0))
    d.episode()
    d.complete(answers.prepared(settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    d.complete(answers.accepted(60), name=steps.SUBMIT_EXPORT.name)
    assert d.entity_calls("pace")[-1].input["pollsPerHour"] == 2000


def test_an_input_written_before_budgets_replays_with_the_documented_quota() -> None:
    old = _job().to_input()
    assert "quotaBudget" not in old
    assert ExportJob.from_input(old).quota_budget is None
    d = _driver(old, _full(3))
    d.episode()
    d.complete(answers.prepared(settle_seconds=0), name=steps.PREPARE_CONTAINER.name)
    assert d.entity_calls("ask")[-1].input["submitsPerDay"] is None
    assert d.pending().name == steps.SUBMIT_EXPORT.name, "3 of 1,000 used: through at once"
    state = gate.GateState.from_dict(json.loads(d.entity_states[GATE_KEY] or "null"))
    assert state.submit_budget is None
