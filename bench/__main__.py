"""``make bench``: what a long export costs in replays (counts), how a burst of DSRs paces
itself against Graph's submit limit (counts and ratios, in virtual time), and what a cold
start costs over the SDK floor (a ratio of medians), and what the DSR list costs at 100 and
at 10,000 DSRs (counts and a ratio of medians). Nothing here is a test: nothing asserts
a timing.

``python -m bench [--runs N]``: N fresh interpreters per cold-start median (default 15).
"""

from __future__ import annotations

import argparse
import sys

from bench import burst, cold_start, list_cost, replay_cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=cold_start.RUNS, help="cold-start samples")
    args = parser.parse_args(argv)
    replay_cost.main()
    print()
    burst.main()
    print()
    list_cost.main()
    print()
    cold_start.main(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
