"""Cold start: what ``import function_app`` costs over the SDK floor, in fresh interpreters.

Every Durable Functions app in Python pays for ``import azure.functions,
azure.durable_functions``: that is the floor. What the app adds on top is what its own
design decides (the Azure storage and identity SDKs and ``requests`` are imported on first use,
see docs/architecture.md), so the figure reported is the ratio of the two, with the goal
``<= 1.3x``.

Each sample is a new ``python`` process that times one import statement with
``time.perf_counter_ns`` and reports it with ``len(sys.modules)`` afterwards. The app and the
floor alternate, so whatever else the machine is doing falls on both alike. Both import from
bytecode: one discarded run of each first compiles everything into a temporary cache
(``PYTHONPYCACHEPREFIX``, outside the tree, even where ``PYTHONDONTWRITEBYTECODE`` is set), so
the app's own modules are not compiled from source on every run while the installed SDKs'
are read from theirs. The medians are printed, never asserted: timings of a shared machine
are a trend to watch, not a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 15
GOAL = 1.3
APP = "function_app"
FLOOR = "azure.functions, azure.durable_functions"

_PROBE = """\
import sys, time
started = time.perf_counter_ns()
import {modules}
elapsed = time.perf_counter_ns() - started
print(elapsed, len(sys.modules))
"""


@dataclass(frozen=True)
class Sample:
    nanoseconds: int
    modules: int


def measure(modules: str, env: Mapping[str, str]) -> Sample:
    """``import <modules>`` in a fresh interpreter started in the repository root."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules=modules)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elapsed, count = out.split()
    return Sample(int(elapsed), int(count))


def main(runs: int = RUNS) -> None:
    app: list[Sample] = []
    floor: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for modules in (APP, FLOOR):
            measure(modules, env)  # compiles into the cache; not counted
        for _ in range(runs):
            app.append(measure(APP, env))
            floor.append(measure(FLOOR, env))
    app_ms = statistics.median(s.nanoseconds for s in app) / 1e6
    floor_ms = statistics.median(s.nanoseconds for s in floor) / 1e6
    ratio = app_ms / floor_ms
    print(f"cold start: median of {runs} fresh interpreters each, the two alternating")
    for label, median, samples in (
        (f"import {APP}", app_ms, app),
        (f"import {FLOOR} (floor)", floor_ms, floor),
    ):
        count = max(s.modules for s in samples)
        print(f"{label:<58} {median:>8.1f} ms {count:>6} modules")
    verdict = "within" if ratio <= GOAL else "over"
    print(f"ratio {ratio:.2f}x the floor (goal <= {GOAL}x: {verdict})")
