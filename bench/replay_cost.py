"""What a long export costs the task hub and Graph, in counts.

Drives the real orchestrator through the SDK's replay (:mod:`testsupport.replay`) for an
export that Graph takes ``EXPORT_DAYS`` to finish, and reports, per policy: poll rounds (Graph
GETs), executions (continue_as_new generations), the largest history any replay has to read,
and the total events replayed, which is what a replaying host pays. The ratio column compares
each policy's replay work with never continuing as new: replay work grows with the square of
the rounds kept in one history, which is why the orchestration continues as new (default:
every 20 rounds).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from dsr_export.domain import steps
from dsr_export.domain.job import ExportJob, ExportPolicy
from dsr_export.domain.steps import ORCHESTRATOR
from testsupport.replay import Entry, Kind, ReplayDriver, user_functions

USER = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
EXPORT_DAYS = 10
OPERATION_URL = "https://graph.microsoft.com/beta/dataPolicyOperations/op"


@dataclass(frozen=True)
class Cost:
    polls: int
    executions: int
    max_history: int
    events_replayed: int


@functools.cache
def entries() -> dict[str, Entry]:
    """The app's entry points by name, as the worker finds them (``get_functions()`` may run
    once per process, hence the cache)."""
    from function_app import app

    return user_functions(app.get_functions())


def _orchestrator() -> Entry:
    entry: Entry = entries()[ORCHESTRATOR]
    return entry


def simulate(policy: ExportPolicy) -> Cost:
    job = ExportJob(request_id="BENCH", user=USER, user_id=USER, policy=policy)
    d = ReplayDriver(_orchestrator(), ORCHESTRATOR, job.to_input(), instance_id="BENCH")
    d.episode()
    d.complete(steps.ContainerPrepared(container="c", settle_seconds=30).to_dict())
    d.fire_timer()
    d.complete(
        steps.ExportSubmitted(
            outcome=steps.Outcome.ACCEPTED,
            operation_id="op",
            operation_url=OPERATION_URL,
            retry_after_seconds=60,
            submitted_at=d.now.isoformat(),
            sas_expires_at=(d.now + timedelta(days=60)).isoformat(),
        ).to_dict()
    )
    done_at = d.now + timedelta(days=EXPORT_DAYS)
    polls = executions = 1
    max_history = replayed = 0
    while True:
        max_history = max(max_history, len(d.history))
        replayed += len(d.history)
        if d.actions[-1].kind == Kind.CONTINUE_AS_NEW:
            executions += 1
            d.continue_as_new()
            continue
        action = d.pending()
        if action.kind == Kind.TIMER:
            d.fire_timer()
        elif action.name == steps.CHECK_EXPORT.name:
            polls += 1
            status = "complete" if d.now >= done_at else "running"
            d.complete(steps.ExportChecked(status=status).to_dict())
        elif action.name == steps.FINALIZE_EXPORT.name:
            sas = {"revoked": True, "expiresAt": None}
            d.complete(steps.ExportFinalized(manifest=None, sas=sas).to_dict())
            break
    return Cost(polls, executions, max_history, replayed)


def main() -> None:
    baseline = simulate(ExportPolicy(rounds_per_history=10_000, timeout_days=45))
    rows = [("never continue_as_new", baseline)]
    for rounds in (10, 20, 50):
        rows.append(
            (f"continue every {rounds} rounds", simulate(ExportPolicy(rounds_per_history=rounds)))
        )
    for cap in (600, 3600 * 4):
        rows.append(
            (
                f"cap {cap // 60} min, every 20",
                simulate(ExportPolicy(max_poll_interval_seconds=cap)),
            )
        )
    print(f"replay cost: a {EXPORT_DAYS}-day export, replayed through the SDK")
    print(f"{'policy':<28} {'polls':>6} {'execs':>6} {'max hist':>9} {'replayed':>9} {'ratio':>6}")
    for name, cost in rows:
        ratio = cost.events_replayed / baseline.events_replayed
        print(
            f"{name:<28} {cost.polls:>6} {cost.executions:>6} {cost.max_history:>9} "
            f"{cost.events_replayed:>9} {ratio:>6.2f}"
        )
