"""Polls within the tenant's hourly budget at any backlog (issue 20, item 3).

Microsoft documents 10,000 ``dataPolicyOperation`` GETs an hour per tenant; the app keeps its
exports' polls under :data:`pacing.POLL_BUDGET_PER_HOUR` (9,000) by widening each export's
cadence to its share of the budget. The pure rule at its boundaries, the gate's count of the
exports in flight, then the DSR's poll phase through the SDK's replay.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dsr_export.domain import gate, pacing, steps
from dsr_export.domain.job import ExportJob, ExportPolicy
from tests import answers
from tests.replay import Driver, Kind

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
GATE_KEY = "@submit_gate@home"


@pytest.mark.parametrize(
    ("in_flight", "seconds"),
    [(0, 0), (1, 1), (9, 4), (2500, 1000), (9000, 3600), (9001, 3601), (20000, 8000)],
)
def test_the_budget_gives_each_export_its_share_of_the_hour(in_flight: int, seconds: int) -> None:
    assert pacing.POLL_BUDGET_PER_HOUR == 9000
    assert pacing.budget_wait(in_flight) == seconds  # 20,000 in flight: 2.2 hours


def test_the_shares_never_add_up_to_more_than_the_budget() -> None:
    for in_flight in (1, 7, 9000, 9001, 12345, 20000, 100000):
        assert in_flight * 3600 / pacing.budget_wait(in_flight) <= pacing.POLL_BUDGET_PER_HOUR


def test_one_export_in_flight_polls_exactly_as_before() -> None:
    for previous in (60, 120, 1800, 3600):
        for cap in (600, 3600):
            expected = pacing.poll_wait(previous, cap=cap)
            assert pacing.paced_poll_wait("r1", 3, previous, cap=cap, in_flight=1) == expected
    # Below the budget (9,000 at the default hour's cap) nothing changes either.
    assert pacing.paced_poll_wait("r1", 3, 3600, cap=3600, in_flight=9000) == 3600


def test_beyond_the_budget_the_wait_is_the_share_spread_per_request() -> None:
    waits = {
        rid: pacing.paced_poll_wait(rid, 4, 3600, cap=3600, in_flight=20000)
        for rid in ("r1", "r2", "r3", "r4")
    }
    for rid, wait in waits.items():
        assert 8000 <= wait < 8000 * 1.5
        assert wait == pacing.paced_poll_wait(rid, 4, 3600, cap=3600, in_flight=20000), "replay"
    assert len(set(waits.values())) > 1, "different DSRs spread out"


def test_the_first_poll_waits_the_retry_after_unless_the_budget_is_wider() -> None:
    assert pacing.first_poll_wait("r1", 60, 1) == 60, "a lone export: a minute, as before"
    assert pacing.first_poll_wait("r1", 60, 150) == 60
    assert pacing.first_poll_wait("r1", 60, 151) >= pacing.budget_wait(151)
    assert 8000 <= pacing.first_poll_wait("r1", 60, 20000) < 12000
    assert pacing.first_poll_wait("r1", 9000, 20000) >= 9000, "Retry-After is the minimum"


def test_a_refused_check_waits_at_least_the_budgets_share() -> None:
    assert pacing.poll_retry_wait("r1", 2, 60, 3600, None, 1) == pacing.poll_retry_wait(
        "r1", 2, 60, 3600, None
    )
    assert pacing.poll_retry_wait("r1", 2, 60, 3600, None, 20000) >= 8000


# -- the gate's count ------------------------------------------------------------------------


#: Where the gate counts each export of these tests, as each DSR remembers it.
_COUNTED: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    _COUNTED.clear()


def _pace(state: gate.GateState, rid: str, at: datetime, cap: int = 3600):
    state, paced = gate.pace(state, gate.PaceAsk(rid, at.isoformat(), cap, _COUNTED.get(rid)))
    _COUNTED[rid] = paced.counted_until
    return state, paced.in_flight


def test_the_gate_counts_each_polling_export_once_until_its_dsr_withdraws() -> None:
    state, count = _pace(gate.GateState(), "A", T0)
    assert count == 1
    state, count = _pace(state, "B", T0 + timedelta(minutes=1))
    assert count == 2
    state, count = _pace(state, "A", T0 + timedelta(hours=2))
    assert count == 2, "checking in again does not count twice"
    state = gate.withdraw(state, "A", _COUNTED["A"])
    assert gate.status(state, (T0 + timedelta(hours=2)).isoformat())["exporting"] == 1
    state, count = _pace(state, "C", T0 + timedelta(hours=2))
    assert count == 2
    assert gate.GateState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_exports_let_through_count_before_their_dsrs_check_in() -> None:
    state = gate.GateState()
    for n in range(1000):  # an empty window: a thousand let through at once
        state, answer = gate.ask(state, gate.Ask(f"D{n}", None, None, T0.isoformat()))
        assert answer.granted
    state, count = _pace(state, "D0", T0 + timedelta(minutes=1))
    assert count == 1000, "the first to check in does not count only itself"
    state = gate.report(state, gate.SubmitReport("D1", gate.SubmitVerdict.ACCEPTED, T0.isoformat()))
    assert "D1" in state.starting, "accepted: in flight before its first check-in"
    state, count = _pace(state, "D1", T0 + timedelta(minutes=2))
    assert count == 1000, "counted once: its check-in takes it from the starting ones"
    assert not state.starting


def test_an_export_whose_dsr_went_silent_stops_counting_after_its_check_ins_lapse() -> None:
    state, _ = _pace(gate.GateState(), "gone", T0)
    lapse = timedelta(seconds=pacing.pace_lapse_seconds(1, 3600))
    assert lapse >= timedelta(hours=pacing.POLL_PACE_EVERY * 1.5), "five polls at the cap"
    at, count = T0, 1
    while at < T0 + lapse - timedelta(minutes=5):  # the gate busy (no pause): B every 5 min
        at += timedelta(minutes=5)
        state, count = _pace(state, "B", at)
    assert count == 2
    _, count = _pace(state, "B", T0 + lapse + timedelta(minutes=1))
    assert count == 1


def test_a_quiet_gate_still_counts_a_returning_export_once() -> None:
    """Hours between operations read as a pause; the bucket a DSR was given keeps its name."""
    state, _ = _pace(gate.GateState(), "A", T0)
    state, count = _pace(state, "A", T0 + timedelta(hours=3))
    assert count == 1
    assert sum(state.exporting.values()) == 1


def test_a_host_down_for_hours_does_not_make_the_exports_lapse() -> None:
    state, _ = _pace(gate.GateState(), "A", T0)
    lapse = timedelta(seconds=pacing.pace_lapse_seconds(1, 3600))
    down = lapse + timedelta(hours=1)  # no operation at all meanwhile: a pause
    _, count = _pace(state, "B", T0 + down)
    assert count == 2


# -- the DSR's poll phase, through the SDK's replay --------------------------------------------


def _driver(others: int, **policy: int) -> Driver:
    job = ExportJob(
        request_id="RITM0001",
        user=USER_ID,
        user_id=USER_ID,
        received_at=T0.isoformat(),
        policy=ExportPolicy(**policy),
    )
    d = Driver("export_personal_data", job.to_input(), now=T0)
    until = gate.bucket(T0 + timedelta(days=2))
    crowd = gate.GateState(exporting={until: others} if others else {})
    d.entity_states[GATE_KEY] = json.dumps(crowd.to_dict())
    return d


def _poll_waits(d: Driver, rounds: int) -> list[int]:
    d.episode()
    d.complete(answers.prepared("dsr-ritm0001-x"), name=steps.PREPARE_CONTAINER.name)
    d.fire_timer()
    d.complete(answers.accepted(60), name=steps.SUBMIT_EXPORT.name)
    waits = []
    for _ in range(rounds):
        timer = d.pending()
        assert timer.kind == Kind.TIMER
        waits.append(int((timer.fire_at - d.now).total_seconds()))
        d.fire_timer()
        d.complete(answers.checked("running", 10.0), name=steps.CHECK_EXPORT.name)
    return waits


def test_a_lone_export_polls_on_its_own_doubling_cadence() -> None:
    assert _poll_waits(_driver(0), 8) == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_with_20000_exports_in_flight_the_poll_phase_waits_its_share_of_the_budget() -> None:
    d = _driver(19999)
    waits = _poll_waits(d, 7)
    # The first poll too (before: a minute, and a window's 1,000 first polls in one minute).
    assert waits[0] == pacing.first_poll_wait("RITM0001", 60, 20000)
    assert waits[0] == pacing.budgeted_wait("RITM0001", 0, 20000)
    for poll_round, wait in enumerate(waits[1:], start=1):
        assert wait == pacing.budgeted_wait("RITM0001", poll_round, 20000)
        assert 8000 <= wait < 12000
    paces = d.entity_calls("pace")
    assert len(paces) == 2, "the gate hears from the DSR every fifth poll, not every poll"
    assert paces[0].input["requestId"] == "RITM0001"


def test_an_export_that_ends_no_longer_counts_in_flight() -> None:
    d = _driver(3)
    _poll_waits(d, 1)
    state = gate.GateState.from_dict(json.loads(d.entity_states[GATE_KEY] or "null"))
    assert sum(state.exporting.values()) == 4
    d.fire_timer()
    d.complete(answers.checked("complete", 100.0), name=steps.CHECK_EXPORT.name)
    assert d.entity_calls("withdraw"), "the DSR withdraws when its export ended"
    state = gate.GateState.from_dict(json.loads(d.entity_states[GATE_KEY] or "null"))
    assert sum(state.exporting.values()) == 3, "its own count dropped, the others' kept"


def test_a_state_written_with_one_entry_per_export_is_counted_into_buckets() -> None:
    until = (T0 + timedelta(hours=5)).isoformat()
    old = {"exporting": {f"r{n}": until for n in range(20000)}, "clock": T0.isoformat()}
    state = gate.GateState.from_dict(old)
    assert state.exporting == {gate.bucket(T0 + timedelta(hours=5)): 20000}
    assert gate.status(state)["exporting"] == 20000
    assert len(json.dumps(state.to_dict())) < 1000


def test_a_backlogs_next_wave_counts_before_it_starts() -> None:
    """A DSR acts on its count for up to five polls; a waiting backlog's slots free a window's
    worth at a time, and those 1,000 exports start at once. The count includes the waiters the
    gate will let through before the DSR checks in again (before: at 11,600 in flight, 9,935
    GETs in the hour a wave started, ``python -m bench polls``)."""
    sent = tuple(gate._iso(T0 + timedelta(seconds=n)) for n in range(1000))
    waiting = {
        f"W{n}": gate.Waiter(gate._iso(T0 + timedelta(days=5)), gate._iso(T0), gate._iso(T0))
        for n in range(2500)
    }
    state = gate.GateState(sent=sent, waiters=waiting)
    _, count = _pace(state, "A", T0 + timedelta(hours=23))
    assert count == 1 + 1000, "the whole window frees before A's next check-in"
    _, count = _pace(state, "A", T0 + timedelta(hours=12))
    assert count == 1, "nothing frees within its five polls (7.5 hours at the cap)"
    _, count = _pace(gate.GateState(sent=sent), "A", T0 + timedelta(hours=23))
    assert count == 1, "no one waits: nothing is coming"
