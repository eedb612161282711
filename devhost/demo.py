"""``make demo``: several DSRs through the whole pipeline, offline, in well under two minutes.

DSRs are sent the way a ticketing system sends them (HTTP POST with the function key, and one
queue message when the app has the queue intake), then watched through the status API only.
Exports that take three days of Graph time finish in seconds on the fast clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost.stack import DevStack, StackOptions

#: Three days of export compressed into about 25 seconds.
DEMO_SPEED = 10_000.0
DEMO_TIMEOUT_SECONDS = 100.0
_BAR = 24


@dataclass(frozen=True)
class DemoDsr:
    """One request, as a ticket would send it."""

    request_id: str
    user: str
    via: str  # "http" or "queue"
    note: str


DSRS = (
    DemoDsr("DEMO-1001", "6e7b768e-07e2-4810-8459-485f84f8f204", "http", "object id"),
    DemoDsr("DEMO-1002", "alex.wilber@contoso.example", "http", "UPN, resolved by an activity"),
    DemoDsr("DEMO-1003", "48d31887-5fad-4d73-a9f5-3c356e68a038", "http", "object id"),
    DemoDsr("DEMO-1004", "87d349ed-44d7-43e1-9a83-5f2406dee5bd", "queue", "queue message"),
)


def run_demo(state_dir: Path, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 only when every DSR completed."""
    options = StackOptions(state_dir=state_dir, speed=DEMO_SPEED, export_duration=timedelta(days=3))
    started = time.monotonic()
    with DevStack(options) as stack:
        assert stack.clock is not None
        virtual_start = stack.clock.now()
        out.write(
            f"offline host up in {time.monotonic() - started:.1f}s: {stack.api_url} "
            f"(Azurite, managed identity, Graph simulator; clock x{DEMO_SPEED:,.0f})\n"
        )
        if stack.graph is not None:
            # A burst of throttling on the first polls: the orchestrator waits it out.
            stack.graph.set_faults(throttle_next=2, throttle_retry_after=120, routes={"poll"})
            out.write("Graph will throttle the first two polls (429, Retry-After: 120)\n")
        has_queue = any(f.get_trigger().type == "queueTrigger" for f in stack.functions)
        dsrs = [d for d in DSRS if d.via == "http" or has_queue]
        session = requests.Session()
        session.headers["x-functions-key"] = stack.function_key
        for dsr in dsrs:
            _submit(stack, session, dsr)
            out.write(f"submitted {dsr.request_id} via {dsr.via} ({dsr.note})\n")
        finals = _watch(stack, session, [d.request_id for d in dsrs], out)
        elapsed = time.monotonic() - started
        graph_days = (stack.clock.now() - virtual_start) / timedelta(days=1)
    return _summary(finals, elapsed, graph_days, out)


def _submit(stack: DevStack, session: requests.Session, dsr: DemoDsr) -> None:
    body = {
        "requestId": dsr.request_id,
        "user": dsr.user,
        "regulation": "GDPR",
        "requestedBy": "demo",
    }
    if dsr.via == "queue":
        queue = QueueClient.from_connection_string(
            stack.environ["AzureWebJobsStorage"], "dsr-requests"
        )
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        queue.send_message(base64.b64encode(json.dumps(body).encode()).decode())
        return
    response = session.post(f"{stack.api_url}/exports", json=body, timeout=30)
    if response.status_code != 202:
        raise SystemExit(f"{dsr.request_id}: {response.status_code} {response.text}")


def _watch(
    stack: DevStack, session: requests.Session, ids: list[str], out: TextIO
) -> dict[str, dict[str, Any]]:
    render = _LiveRender(out) if out.isatty() else _LineRender(out)
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for request_id in ids:
            response = session.get(f"{stack.api_url}/exports/{request_id}", timeout=30)
            if response.status_code == 200:
                latest[request_id] = response.json()
            else:
                latest.setdefault(request_id, {"phase": "queued"})
        render(ids, latest)
        if all(latest.get(i, {}).get("terminal") for i in ids):
            break
        time.sleep(0.25)  # a display refresh interval, not a wait for a condition
    return latest


def _bar(doc: dict[str, Any]) -> str:
    progress = doc.get("progress")
    if doc.get("phase") == "completed":
        progress = 100.0
    fraction = max(0.0, min(1.0, float(progress or 0) / 100))
    filled = int(fraction * _BAR)
    return "[" + "#" * filled + "-" * (_BAR - filled) + f"] {fraction * 100:5.1f}%"


def _line(request_id: str, doc: dict[str, Any]) -> str:
    graph = doc.get("graphStatus") or "-"
    return f"{request_id:<10} {doc.get('phase', '?'):<18} {_bar(doc)}  graph={graph}"


class _LineRender:
    """Plain lines, one per change: what CI logs and pipes get."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._seen: dict[str, tuple[str, int]] = {}

    def __call__(self, ids: list[str], latest: dict[str, dict[str, Any]]) -> None:
        for request_id in ids:
            doc = latest.get(request_id, {})
            key = (str(doc.get("phase")), int(float(doc.get("progress") or 0) // 25))
            if self._seen.get(request_id) != key:
                self._seen[request_id] = key
                self._out.write(_line(request_id, doc) + "\n")
        self._out.flush()


class _LiveRender:
    """One line per DSR, redrawn in place."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._drawn = 0

    def __call__(self, ids: list[str], latest: dict[str, dict[str, Any]]) -> None:
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F")
        for request_id in ids:
            self._out.write("\x1b[2K" + _line(request_id, latest.get(request_id, {})) + "\n")
        self._drawn = len(ids)
        self._out.flush()


def _summary(
    finals: dict[str, dict[str, Any]], elapsed: float, graph_days: float, out: TextIO
) -> int:
    out.write(f"\n{'DSR':<10} {'result':<10} {'blobs':>5} {'bytes':>8}  products / error\n")
    ok = True
    for request_id, doc in finals.items():
        phase = str(doc.get("phase"))
        ok = ok and phase == "completed"
        manifest = doc.get("manifest") or {}
        detail = ", ".join(sorted(manifest.get("products", {}))) or (doc.get("error") or {}).get(
            "code", ""
        )
        out.write(
            f"{request_id:<10} {phase:<10} {manifest.get('blobCount', 0):>5} "
            f"{manifest.get('totalBytes', 0):>8}  {detail}\n"
        )
    verdict = "every DSR completed" if ok else "NOT every DSR completed"
    out.write(f"\n{verdict}: {graph_days:.1f} days of Graph time in {elapsed:.0f}s\n")
    return 0 if ok else 1
