"""``make bench``: what a long export costs the task hub and Graph, in counts.

Drives the real orchestrator through the SDK's replay (tests/replay.py) for an export that
Graph takes ``EXPORT_DAYS`` to finish, and reports, per policy: poll rounds (Graph GETs),
executions (continue_as_new generations), the largest history any replay has to read, and the total
events replayed, which is what a replaying host pays. The ratio column compares each policy's
replay work with never continuing as new: replay work grows with the square of the rounds kept
in one history, which is why the orchestration continues as new (default: every 20 rounds).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta

from dsr_export.domain.job import ExportJob, ExportPolicy
from tests.replay import Driver

USER = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
EXPORT_DAYS = 10


@dataclass(frozen=True)
class Cost:
    polls: int
    executions: int
    max_history: int
    events_replayed: int


def simulate(policy: ExportPolicy) -> Cost:
    job = ExportJob(request_id="BENCH", user=USER, user_id=USER, policy=policy)
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    d.complete({"container": "c", "requestInfoExists": False, "settleSeconds": 30})
    d.fire_timer()
    d.complete(
        {
            "outcome": "accepted",
            "operationId": "op",
            "operationUrl": "https://graph.microsoft.com/beta/dataPolicyOperations/op",
            "retryAfterSeconds": 60,
            "submittedAt": d.now.isoformat(),
            "sasExpiresAt": (d.now + timedelta(days=60)).isoformat(),
        }
    )
    done_at = d.now + timedelta(days=EXPORT_DAYS)
    polls = executions = 1
    max_history = replayed = 0
    executions = 1
    while True:
        max_history = max(max_history, len(d.history))
        replayed += len(d.history)
        last = d.actions[-1]
        if last.kind == "continue_as_new":
            executions += 1
            d.continue_as_new()
            continue
        action = d.pending()
        if action.kind == "timer":
            d.fire_timer()
        elif action.name == "check_export":
            polls += 1
            status = "complete" if d.now >= done_at else "running"
            d.complete({"outcome": "ok", "status": status, "progress": None, "completedAt": None})
        elif action.name == "finalize_export":
            d.complete({"manifest": None, "sas": {"revoked": True, "expiresAt": None}})
            break
    return Cost(polls, executions, max_history, replayed)


def main() -> int:
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
    print(f"a {EXPORT_DAYS}-day export, replayed through the SDK")
    print(f"{'policy':<28} {'polls':>6} {'execs':>6} {'max hist':>9} {'replayed':>9} {'ratio':>6}")
    for name, cost in rows:
        ratio = cost.events_replayed / baseline.events_replayed
        print(
            f"{name:<28} {cost.polls:>6} {cost.executions:>6} {cost.max_history:>9} "
            f"{cost.events_replayed:>9} {ratio:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
