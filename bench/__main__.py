"""``make bench``: what a long export costs in replays (counts), how a backlog of DSRs goes
through the tenant's submit gate against Graph's documented quota (counts and ratios, in virtual
time; ``--backlog N`` DSRs, default 3,000), what a cold start
costs over the SDK floor (a ratio of medians), what the DSR list costs at 100 and at 10,000
DSRs (counts and a ratio of medians), and how fast and in how much memory the subject's
package is built from a large export (a ratio to a plain copy, and peak RSS at two sizes).
Nothing here is a test: nothing asserts a timing.

``python -m bench [--runs N] [--package-gb G | --quick] [--one-size] [package]``: N fresh
interpreters per cold-start median (default 15); the package benchmark's export of G GB
(default 1, a few minutes; the issue's 5 GB run: ``--package-gb 5``, about half an hour;
``--quick`` 0.25), after one of a quarter of that (``--one-size``: only G); ``package`` runs
only that one. ``python -m bench quota --backlog N --export-hours H [--max-poll-seconds S]``:
long exports instead, polls against the tenant's hourly budget and the completion-detection
latency. ``python -m bench gate``: the submit gate's state at 20,000 exports in flight (size, and
each operation's cost through the entity function). ``python -m bench polls [--backlog N]``: the
poll budget at thousands of exports in flight at the default hour-long cap (N DSRs, default
12,000; the poll phase's arithmetic, not the replay).
"""

from __future__ import annotations

import argparse
import sys

from bench import (
    cold_start,
    gate_state,
    list_cost,
    package_throughput,
    poll_budget,
    quota,
    replay_cost,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "only",
        nargs="?",
        choices=["package", "quota", "gate", "polls"],
        help="run only this benchmark",
    )
    parser.add_argument("--runs", type=int, default=cold_start.RUNS, help="cold-start samples")
    parser.add_argument(
        "--package-gb",
        type=float,
        default=package_throughput.DEFAULT_GB,
        help="size of the packaged export, GB (default 1; the issue's run: 5)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a {package_throughput.QUICK_GB} GB package run"
    )
    parser.add_argument(
        "--one-size", action="store_true", help="package only the full size, not a quarter first"
    )
    parser.add_argument(
        "--backlog", type=int, default=3000, help="DSRs in the quota benchmark's backlog"
    )
    parser.add_argument(
        "--export-hours",
        type=float,
        default=0,
        help="quota only: exports of this many hours on average (polls against the budget)",
    )
    parser.add_argument(
        "--max-poll-seconds",
        type=int,
        default=3600,
        help="quota --export-hours: the policy's longest poll interval",
    )
    args = parser.parse_args(argv)
    size = package_throughput.QUICK_GB if args.quick else args.package_gb
    if args.only == "gate":
        gate_state.main()
        return 0
    if args.only == "polls":
        poll_budget.main(args.backlog if args.backlog != 3000 else 12_000)
        return 0
    if args.only == "quota":
        if args.export_hours:
            quota.main_long(args.backlog, args.export_hours, args.max_poll_seconds)
        else:
            quota.main(args.backlog)
        return 0
    if args.only != "package":
        replay_cost.main()
        print()
        quota.main(args.backlog)
        print()
        gate_state.main()
        print()
        list_cost.main()
        print()
        cold_start.main(args.runs)
        print()
    package_throughput.main(size, one_size=args.one_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
