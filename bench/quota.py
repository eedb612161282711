"""A backlog of DSRs against Graph's documented quota, through the real orchestrator and gate.

Every DSR is the real export orchestrator replayed through the SDK (:mod:`testsupport.replay`),
and every one of them asks the same submit gate: the app's entity function, run through the
SDK's entity entry point on one shared state, one operation at a time (as the extension runs
an entity). Graph is the offline simulator's own quota ledger (``devhost/graph/quotas.py``:
1,000 submits per rolling 24 hours per tenant, 429 without Retry-After beyond), in both
readings of whether a refused submit counts. The clock is virtual: one event queue orders every
DSR's next step, so days of quota take minutes.

The backlog arrives at once with legal deadlines spread evenly over 1-30 days (an
organisation's catch-up after an outage, a bulk import), on a tenant whose window is already
``--spent`` full (default 0). Reported against the goals of issue 20, item 6:

- time until all are submitted over the quota's minimum (the least the quota allows:
  ``ceil(n / 1000) - 1`` whole days when the window starts empty); goal <= 1.05x;
- throttled submit calls over all submit calls; goal <= 1 %;
- deadline-order inversions: a DSR let through while one with an earlier deadline already
  waited at the gate and went more than a minute later (DSRs let through in one wave of freed
  slots go within moments, in whatever order their timers fire); goal 0;
- peak dataPolicyOperation GETs in any hour (the polls of the first ``--poll-hours`` of each
  export; every export runs that long here); goal <= 9,000;
- history events per execution (the largest); goal <= 200;
- the extra wait of a lone DSR at an idle gate over the policy's settle time; goal <= 5 s.

With ``--export-hours H`` it runs long exports too (issue 20, item 3): every export takes
between H/2 and 3H/2 hours at Graph (spread evenly), so many are in flight at once, and every
poll is charged to the simulator's hourly quota (10,000 GETs, 429 without Retry-After beyond).
Reported: the most exports in flight at once, peak GETs in any hour (goal <= 9,000), polls Graph
refused, and the completion-detection latency (from the moment the simulator's export is
complete to the check that sees it; median and p95). ``--max-poll-seconds`` sets the policy's
longest poll interval (``EXPORT_POLL_MAX_INTERVAL_SECONDS``, default 3,600): with a shorter
one the budget binds at a backlog a laptop can replay (at the default hour, beyond 9,000 exports
in flight).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from bench.replay_cost import OPERATION_URL, USER, entries
from devhost.graph.quotas import QuotaLedger
from devhost.graph.replies import GraphError
from dsr_export.domain import gate, steps
from dsr_export.domain.job import ExportJob, ExportPolicy
from dsr_export.domain.steps import ORCHESTRATOR
from testsupport.replay import START, Kind, ReplayDriver

GATE = "submit_gate"
SETTLE_SECONDS = 30
DAY = timedelta(days=1)


@dataclass
class Run:
    dsrs: int
    refused_count: bool
    submit_calls: int = 0
    throttled: int = 0
    inversions: int = 0
    last_submit: timedelta = timedelta(0)
    max_history: int = 0
    gets_by_hour: Counter[int] = field(default_factory=Counter)
    asks: int = 0
    failed: int = 0
    refused_polls: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    #: Seconds from each export's completion at Graph to the check that saw it.
    latencies: list[float] = field(default_factory=list)

    def latency(self, share: float) -> float:
        """The ``share`` quantile of the completion-detection latencies, seconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(int(share * len(ordered)), len(ordered) - 1)]

    @property
    def minimum(self) -> timedelta:
        """The least time the quota allows: 1,000 right away, 1,000 more each day."""
        return DAY * max(math.ceil(self.dsrs / gate.SUBMITS_PER_WINDOW) - 1, 0)

    @property
    def ratio(self) -> float:
        if not self.minimum:
            return 1.0
        return self.last_submit / self.minimum

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.submit_calls if self.submit_calls else 0.0

    @property
    def peak_gets(self) -> int:
        """GETs in the busiest hour (hours counted from the start)."""
        return max(self.gets_by_hour.values(), default=0)


def _quota_refusal(
    step: steps.Step[Any, Any], subject: Literal["submit", "poll"]
) -> dict[str, Any]:
    """The activity's answer to one of Graph's quota 429s (no Retry-After): the submit's daily
    quota or the polls' hourly one."""
    from activities.export_steps import _graph_failure
    from dsr_export.adapters.graph_errors import GraphError as AppGraphError

    failure = _graph_failure(
        step, "BENCH", AppGraphError(429, "TooManyRequests", "quota"), subject=subject
    )
    answer: dict[str, Any] = failure.to_dict()
    return answer


def _accepted(n: int, at: datetime) -> dict[str, Any]:
    return steps.ExportSubmitted(
        outcome=steps.Outcome.ACCEPTED,
        operation_id=f"op{n}",
        operation_url=OPERATION_URL,
        retry_after_seconds=60,
        submitted_at=at.isoformat(),
        sas_expires_at=(at + timedelta(days=60)).isoformat(),
    ).to_dict()


class _Backlog:
    """The event loop: DSR drivers, one shared gate, Graph's ledger, virtual time."""

    def __init__(
        self,
        count: int,
        *,
        refused_count: bool,
        spent: int,
        poll_hours: float,
        policy: ExportPolicy | None = None,
        long: bool = False,
    ) -> None:
        self.now = START
        self.graph = QuotaLedger(lambda: self.now)
        self.graph.set(refused_count=refused_count)
        if spent:
            self.graph.spend(submits=spent)
        self.run = Run(count, refused_count)
        self.poll_for = timedelta(hours=poll_hours)
        self.policy = policy or ExportPolicy()
        self.long = long
        self.done_at: dict[int, datetime] = {}
        self.poll_refusal = _quota_refusal(steps.CHECK_EXPORT, "poll")
        self.queue: list[tuple[datetime, int, int]] = []
        self.order = itertools.count()
        self.gate_state: dict[str, str | None] = {}
        self.drivers: list[ReplayDriver] = []
        self.deadlines: dict[int, datetime] = {}
        self.turned_away: dict[int, datetime] = {}
        self.submitted: dict[int, datetime] = {}
        self.refusal = _quota_refusal(steps.SUBMIT_EXPORT, "submit")
        for n in range(count):
            self._start(n, count)

    def _start(self, n: int, count: int) -> None:
        deadline = START + DAY + (29 * DAY) * (n / max(count - 1, 1))
        job = ExportJob(
            request_id=f"Q-{n:05d}",
            user=USER,
            user_id=f"{n:08d}-0000-4000-8000-000000000000",
            received_at=START.isoformat(),
            legal_deadline=deadline.isoformat(),
            policy=self.policy,
        )
        driver = ReplayDriver(
            entries()[ORCHESTRATOR],
            ORCHESTRATOR,
            job.to_input(),
            instance_id=job.request_id,
            entities={GATE: entries()[GATE]},
        )
        driver.entity_states = self.gate_state  # one gate for the tenant
        self.drivers.append(driver)
        self.deadlines[n] = deadline
        driver.episode()
        self._push(START, n)

    def _push(self, at: datetime, n: int) -> None:
        heapq.heappush(self.queue, (at, next(self.order), n))

    def loop(self) -> Run:
        while self.queue:
            at, _, n = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            self._step(n)
        self.run.inversions = self._inversions()
        return self.run

    def _step(self, n: int) -> None:
        driver = self.drivers[n]
        driver.now = max(driver.now, self.now)
        while driver.actions and driver.actions[-1].kind == Kind.CONTINUE_AS_NEW:
            driver.continue_as_new()
        self.run.max_history = max(self.run.max_history, len(driver.history))
        if driver.replies and driver.replies[-1].get("isDone"):
            return
        action = driver.pending()
        if action.kind == Kind.TIMER:
            if action.fire_at > self.now:
                self._push(action.fire_at, n)
                return
            driver.fire_timer()
            self._note_turned_away(n, driver)
            self._push(self.now, n)
            return
        self._activity(n, driver, action.name)
        self._note_turned_away(n, driver)

    def _note_turned_away(self, n: int, driver: ReplayDriver) -> None:
        """A DSR whose last ask the gate answered "not yet": waiting on the gate's timer."""
        if n in self.submitted or n in self.turned_away:
            return
        calls = driver.entity_calls()
        status = (driver.replies[-1].get("customStatus") or {}) if driver.replies else {}
        waiting = (
            calls
            and calls[-1].name == "ask"
            and status.get("phase") == "submitting"
            and not driver.replies[-1].get("isDone")
            and driver.pending().kind == Kind.TIMER
        )
        if waiting:
            self.turned_away[n] = self.now

    def _activity(self, n: int, driver: ReplayDriver, name: str | None) -> None:
        if name == steps.PREPARE_CONTAINER.name:
            prepared = steps.ContainerPrepared(container=f"c{n}", settle_seconds=SETTLE_SECONDS)
            driver.complete(prepared.to_dict())
        elif name == steps.SUBMIT_EXPORT.name:
            self._submit(n, driver)
        elif name == steps.CHECK_EXPORT.name:
            self._check(n, driver)
        elif name == steps.READ_EXTENSION_ASKS.name:  # a fresh execution: no asks recorded
            driver.complete(steps.ExtensionAsks().to_dict())
        elif name in (steps.FINALIZE_EXPORT.name, steps.RECORD_FINISHED.name):
            if n not in self.submitted or name == steps.RECORD_FINISHED.name:
                self.run.failed += 1
            return  # the bench ends a DSR at its finalisation
        else:
            raise AssertionError(f"the bench does not answer {name}")
        self._push(self.now, n)

    def _submit(self, n: int, driver: ReplayDriver) -> None:
        self.run.submit_calls += 1
        try:
            self.graph.charge_submit(driver.input["userId"])
        except GraphError:
            self.run.throttled += 1
            driver.complete(self.refusal)
            return
        self.submitted[n] = self.now
        self.run.in_flight += 1
        self.run.most_in_flight = max(self.run.most_in_flight, self.run.in_flight)
        if self.long:  # between half and one and a half times the export time, evenly spread
            share = 0.5 + (n * 0.618034) % 1.0
            self.done_at[n] = self.now + self.poll_for * share
        else:
            self.done_at[n] = self.now + self.poll_for
        self.run.last_submit = max(self.run.last_submit, self.now - START)
        driver.complete(_accepted(n, self.now))

    def _check(self, n: int, driver: ReplayDriver) -> None:
        self.run.gets_by_hour[int((self.now - START) / timedelta(hours=1))] += 1
        if self.long:
            try:
                self.graph.charge_poll()
            except GraphError:
                self.run.refused_polls += 1
                driver.complete(self.poll_refusal)
                return
        done = self.now >= self.done_at[n]
        if done:
            self.run.in_flight -= 1
            self.run.latencies.append((self.now - self.done_at[n]).total_seconds())
        driver.complete(steps.ExportChecked(status="complete" if done else "running").to_dict())

    def _inversions(self) -> int:
        """Submits let through while one with an earlier deadline already waited (turned away
        by the gate) and went more than a minute later."""
        tolerance = timedelta(seconds=gate.SLOT_MARGIN_SECONDS)
        by_deadline = sorted(self.turned_away, key=lambda k: self.deadlines[k])
        count = 0
        for n, at in self.submitted.items():
            for other in by_deadline:
                if self.deadlines[other] >= self.deadlines[n]:
                    break
                later = self.submitted.get(other)
                if self.turned_away[other] < at and (later is None or later > at + tolerance):
                    count += 1
                    break
        return count


def long_exports(count: int, *, export_hours: float, max_poll_seconds: int = 3600) -> Run:
    """``count`` DSRs at once whose exports take ``export_hours`` on average at Graph."""
    policy = ExportPolicy(max_poll_interval_seconds=max_poll_seconds)
    sim = _Backlog(
        count, refused_count=True, spent=0, poll_hours=export_hours, policy=policy, long=True
    )
    return sim.loop()


def backlog(count: int, *, refused_count: bool, spent: int = 0, poll_hours: float = 0.25) -> Run:
    """Run ``count`` DSRs arriving at once to their submit (and ``poll_hours`` of polls)."""
    run = _Backlog(count, refused_count=refused_count, spent=spent, poll_hours=poll_hours).loop()
    return run


def lone_dsr_extra_seconds() -> float:
    """A lone DSR at an idle gate: seconds from its container to its submit beyond the
    policy's settle time (the gate's whole cost)."""
    sim = _Backlog(1, refused_count=True, spent=0, poll_hours=0)
    driver = sim.drivers[0]
    while True:
        at, _, n = heapq.heappop(sim.queue)
        sim.now = max(sim.now, at)
        action = driver.pending() if not driver.replies[-1].get("isDone") else None
        if action is not None and action.name == steps.SUBMIT_EXPORT.name:
            return (sim.now - START).total_seconds() - SETTLE_SECONDS
        sim._step(n)


def gate_status(run_state: dict[str, str | None]) -> dict[str, Any]:
    raw = run_state.get(f"@{GATE}@home")
    return gate.status(gate.GateState.from_dict(json.loads(raw) if raw else None))


def main_long(count: int, export_hours: float, max_poll_seconds: int) -> None:
    """The long-export run: polls against the hourly budget, completion-detection latency."""
    print(
        f"quota, long exports: {count} DSRs at once, each export {export_hours / 2:g}-"
        f"{export_hours * 1.5:g} h at Graph, longest poll interval {max_poll_seconds} s, "
        "Graph's 10,000 GETs / h per tenant, virtual time"
    )
    run = long_exports(count, export_hours=export_hours, max_poll_seconds=max_poll_seconds)
    unpaced = run.most_in_flight * 3600 // max_poll_seconds
    print(
        f"most in flight {run.most_in_flight}; peak GETs/h {run.peak_gets} (unpaced at the "
        f"cap: {unpaced}); polls refused {run.refused_polls}; completion seen after: median "
        f"{run.latency(0.5) / 60:.1f} min, p95 {run.latency(0.95) / 60:.1f} min; "
        f"max history {run.max_history}; failed {run.failed}"
    )
    print("goals: <= 9,000 GETs/h, <= 200 history events per execution")


def main(count: int = 3000, poll_hours: float = 0.25) -> None:
    print(
        f"quota: {count} DSRs at once, deadlines over 1-30 days, Graph's documented quota "
        "(1,000 submits / 24 h per tenant), virtual time"
    )
    header = (
        f"{'refused counts':>14}  {'all submitted / minimum':>23}  {'throttled':>9}  "
        f"{'inversions':>10}  {'peak GETs/h':>11}  {'max history':>11}  failed"
    )
    print(header)
    for refused_count in (False, True):
        run = backlog(count, refused_count=refused_count, poll_hours=poll_hours)
        print(
            f"{'on' if refused_count else 'off':>14}  "
            f"{run.last_submit / DAY:>8.2f} d / {run.minimum / DAY:.0f} d = {run.ratio:.3f}x  "
            f"{run.throttled_share:>8.2%}  {run.inversions:>10}  {run.peak_gets:>11}  "
            f"{run.max_history:>11}  {run.failed:>6}"
        )
    print(f"lone DSR at an idle gate: {lone_dsr_extra_seconds():.1f} s beyond the settle time")
    print(
        "goals: <= 1.05x the minimum, <= 1 % throttled, 0 inversions, <= 9,000 GETs/h, "
        "<= 200 history events per execution, lone DSR <= 5 s"
    )
