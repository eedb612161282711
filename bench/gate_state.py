"""The submit gate's state at 20,000 exports in flight: its size and what one operation costs.

One tenant's gate (``submit_gate@<tenant>``, a Durable entity) holds its whole state in one JSON
document, read and written by every operation (the extension persists it after each batch). At
the documented quota (1,000 submits a day) and exports that take weeks, 20,000 exports can be in
flight at once while a backlog waits. This builds such a state through the gate's own functions
(:mod:`dsr_export.domain.gate`): a full window of 1,000 submits let through, ``--in-flight``
exports checked in (``pace``), ``--waiting`` DSRs queued with deadlines over 1-30 days. Then it
runs each operation through the app's entity function and the SDK's entity entry point, as the
extension runs it (state JSON in, state JSON out), and reports the state's size by part and the
median time of each operation. Nothing here asserts a timing.

Before the in-flight exports were counted by lapse bucket (issue 20's last session), the state
held one entry per export (request id -> until when): about 1.5 MB at 20,000 with 3,000
waiting, and 180-380 ms an operation on this laptop; the figures of both are in
docs/operations.md ("The submit gate").
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.replay_cost import entries
from dsr_export.domain import gate
from testsupport import durable_protocol as p
from testsupport.replay import START

GATE = "submit_gate"
SAMPLES = 15


def build(in_flight: int, waiting: int) -> tuple[gate.GateState, dict[str, str]]:
    """A gate a day into a long backlog; returns it and where each export is counted."""
    state, now = gate.GateState(), START
    for n in range(1000):  # the window: a thousand let through over the day, all accepted
        at = (now + timedelta(seconds=n * 86)).isoformat()
        ask = gate.Ask(f"S{n:06d}", None, None, at, subject=f"{n:08d}-0000-4000-8000-0000000000")
        state, _ = gate.ask(state, ask)
        state = gate.report(state, gate.SubmitReport(f"S{n:06d}", "accepted", at))
    counted: dict[str, str] = {}
    later = now + timedelta(hours=23, minutes=50)
    for n in range(in_flight):  # check-ins a second apart: the gate never reads a pause
        at = (later + timedelta(seconds=n % 600)).isoformat()
        rid = f"E{n:06d}"
        state, paced = gate.pace(state, gate.PaceAsk(rid, at, 3600, counted.get(rid)))
        counted[rid] = paced.counted_until
    end = later + timedelta(seconds=600)
    for n in range(waiting):
        due = (START + timedelta(days=1 + 29 * n / max(waiting, 1))).isoformat()
        state, _ = gate.ask(state, gate.Ask(f"W{n:06d}", due, START.isoformat(), end.isoformat()))
    return state, counted


def _run(entry: Callable[[str], str], state: str, op: str, data: dict[str, Any]) -> float:
    """Seconds for one operation through the entity entry point, state JSON in and out."""
    request = {"id": "bench", "op": op, "signal": op != "ask", "input": json.dumps(data)}
    context = json.dumps(p.entity_context(GATE, "home", state, [request]))
    started = time.perf_counter()
    reply = json.loads(entry(context))
    elapsed = time.perf_counter() - started
    assert not reply["results"][0].get("isError"), reply
    return elapsed


def main(in_flight: int = 20_000, waiting: int = 3_000) -> None:
    print(
        f"gate state: {in_flight} exports in flight, 1,000 submits in the window, {waiting} "
        "DSRs waiting; each operation through the entity function (state JSON in and out)"
    )
    state, counted = build(in_flight, waiting)
    raw = json.dumps(state.to_dict())
    parts = {k: len(json.dumps(v)) for k, v in state.to_dict().items()}
    big = ", ".join(f"{k} {v / 1000:.1f} kB" for k, v in parts.items() if v > 100)
    print(f"state {len(raw) / 1000:.1f} kB ({big})")
    now = (START + timedelta(hours=24)).isoformat()
    entry = entries()[GATE]
    operations: dict[str, Callable[[int], dict[str, Any]]] = {
        "ask (a waiter asks again)": lambda n: gate.Ask(f"W{n:06d}", None, None, now).to_dict(),
        "pace (an export checks in)": lambda n: gate.PaceAsk(
            f"E{n:06d}", now, 3600, counted.get(f"E{n:06d}")
        ).to_dict(),
        "report (accepted)": lambda n: gate.SubmitReport(f"S{n:06d}", "accepted", now).to_dict(),
        "withdraw (an export ended)": lambda n: {
            "requestId": f"E{n:06d}",
            "countedUntil": counted.get(f"E{n:06d}"),
        },
    }
    names = {"ask": "ask", "pace": "pace", "report": "report", "withdraw": "withdraw"}
    for label, make in operations.items():
        op = names[label.split()[0]]
        times = [_run(entry, raw, op, make(n)) for n in range(SAMPLES)]
        print(f"  {label:<28} median {statistics.median(times) * 1000:7.1f} ms")
    print("status (GET /api/gate) reads the same state: one parse, no write")
