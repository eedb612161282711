"""The poll budget at thousands of exports in flight, the policy's default hour-long poll cap.

``python -m bench quota --export-hours`` replays the real orchestrator for every DSR; at the
default cap the budget binds only beyond 9,000 exports in flight, which takes more than nine
days of submits at the documented quota and exports that last longer still: millions of polls,
hours of replay on a laptop. This runs the poll phase's own arithmetic instead, event by event
in virtual time, with the app's functions: the tenant's gate (:func:`dsr_export.domain.gate.pace`
and ``withdraw`` on one :class:`~dsr_export.domain.gate.GateState`, as the entity runs them) and
the waits (:func:`dsr_export.domain.pacing.paced_poll_wait`), in the order ``_poll`` calls them:
a check-in at the first round of each execution and every :data:`pacing.POLL_PACE_EVERY` rounds
(an execution is ``rounds_per_history`` rounds), the first poll a minute after the submit, the
DSR remembering where the gate counts it. Not modelled: the legal clock's checks (a few a
DSR), refused polls (none happen under the budget), the replay itself.

DSRs are submitted at the quota's pace (the gate lets a window's 1,000 through, then 1,000
each 24 hours and a minute); each export takes between ``days / 2`` and ``3 days / 2`` at Graph
(spread evenly). Reported: the most exports in flight, the peak GETs in any clock hour against
the 9,000 budget (and 10,000 Graph allows), what they would be without the budget (one an hour
each at the cap), and the completion-detection latency (median, p95, max).
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from dsr_export.domain import gate, pacing
from dsr_export.domain.job import ExportPolicy
from testsupport.replay import START

WINDOW = timedelta(seconds=gate.WINDOW_SECONDS + gate.SLOT_MARGIN_SECONDS)


@dataclass
class _Export:
    rid: str
    done_at: float  # seconds from START
    wait: int = pacing.FIRST_POLL_SECONDS
    round: int = 0  # polls so far (the DSR's poll_round)
    index: int = 0  # rounds in this execution
    in_flight: int = 1
    counted_until: str | None = None


def run(dsrs: int, export_days: float, cap: int = 3600) -> dict[str, float]:
    """Every DSR's poll phase in virtual time; the figures."""
    policy = ExportPolicy(max_poll_interval_seconds=cap)
    # The backlog waits at the gate from the start, earliest deadline first (by number).
    waiting = {
        f"P-{n:06d}": gate.Waiter(
            gate.bucket(START + timedelta(days=1 + n / 100)), gate.bucket(START), gate.bucket(START)
        )
        for n in range(dsrs)
    }
    state = gate.GateState(waiters=waiting)
    refused = 0
    events: list[tuple[float, int, int]] = []  # (when, order, DSR): a round starts
    exports: list[_Export] = []
    for n in range(dsrs):
        submitted = (n // gate.SUBMITS_PER_WINDOW) * WINDOW.total_seconds() + n % 1000 * 0.5
        share = 0.5 + (n * 0.618034) % 1.0
        exports.append(_Export(f"P-{n:06d}", submitted + export_days * 86400 * share))
        heapq.heappush(events, (submitted, n, n))
    gets: Counter[int] = Counter()
    latencies: list[float] = []
    in_flight = most = 0
    started: set[int] = set()
    order = dsrs
    while events:
        at, _, n = heapq.heappop(events)
        export = exports[n]
        now = (START + timedelta(seconds=at)).isoformat()
        if n not in started:  # the submit: let through by the gate, accepted by Graph
            started.add(n)
            in_flight += 1
            most = max(most, in_flight)
            state, answer = gate.ask(state, gate.Ask(export.rid, None, None, now))
            refused += not answer.granted  # the model's submit times are the gate's slots
            state = gate.report(state, gate.SubmitReport(export.rid, "accepted", now))
        if export.index % pacing.POLL_PACE_EVERY == 0:
            asked = gate.PaceAsk(export.rid, now, cap, export.counted_until)
            state, paced = gate.pace(state, asked)
            export.in_flight, export.counted_until = paced.in_flight, paced.counted_until
            if export.round == 0:
                export.wait = pacing.first_poll_wait(export.rid, export.wait, export.in_flight)
        check = at + export.wait
        gets[int(check // 3600)] += 1
        export.round += 1
        if check >= export.done_at:
            latencies.append(check - export.done_at)
            in_flight -= 1
            state = gate.withdraw(state, export.rid, export.counted_until)
            continue
        export.wait = pacing.paced_poll_wait(
            export.rid, export.round, export.wait, cap=cap, in_flight=export.in_flight
        )
        export.index = (export.index + 1) % policy.rounds_per_history  # continue-as-new
        order += 1
        heapq.heappush(events, (check, order, n))
    ordered = sorted(latencies)
    peak_hour = max(gets, key=lambda hour: gets[hour])
    return {
        "most": most,
        "peak": gets[peak_hour],
        "peak_day": peak_hour / 24,
        "steady": statistics.median(gets.values()),
        "unpaced": most * 3600 / cap,
        "median": statistics.median(ordered),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
        "state": len(str(state.to_dict())),
        "refused": refused,
    }


def main(dsrs: int = 12_000, export_days: float = 16) -> None:
    print(
        f"poll budget: {dsrs} DSRs at the quota's pace, exports of {export_days / 2:g}-"
        f"{export_days * 1.5:g} days at Graph, the default 1 h poll cap; the poll phase's "
        "arithmetic with the app's gate and pacing functions, virtual time"
    )
    figures = run(dsrs, export_days)
    print(
        f"most in flight {figures['most']:.0f}; peak GETs/h {figures['peak']:.0f} on day "
        f"{figures['peak_day']:.1f} (median hour {figures['steady']:.0f}) "
        f"(budget {pacing.POLL_BUDGET_PER_HOUR}, Graph's quota 10,000; without the budget "
        f"{figures['unpaced']:.0f}); completion seen after: median "
        f"{figures['median'] / 60:.0f} min, p95 {figures['p95'] / 60:.0f} min, max "
        f"{figures['max'] / 60:.0f} min; gate state at the end {figures['state']} bytes; "
        f"submits the gate held back off the model's schedule: {figures['refused']}"
    )
