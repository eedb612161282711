"""``make demo``: several DSRs through the whole pipeline, offline, in well under two minutes.

DSRs are sent the way a ticketing system sends them (HTTP POST with the function key, and one
queue message when the app has the queue intake), then watched through the status API only.
Exports that take three days of Graph time finish in seconds on the fast clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devhost.stack import DevStack, StackOptions
from dsr_export.domain import receipt
from dsr_export.domain.package_manifest import README_MEMBER

#: Three days of export compressed into about 25 seconds.
DEMO_SPEED = 10_000.0
DEMO_TIMEOUT_SECONDS = 100.0
_BAR = 24


@dataclass(frozen=True)
class DemoDsr:
    """One request, as a ticket would send it, and how it is meant to end."""

    request_id: str
    user: str
    via: str  # "http" or "queue"
    note: str
    expect: str = "completed"


DSRS = (
    DemoDsr("DEMO-1001", "6e7b768e-07e2-4810-8459-485f84f8f204", "http", "object id"),
    DemoDsr("DEMO-1002", "alex.wilber@contoso.example", "http", "UPN, resolved by an activity"),
    DemoDsr("DEMO-1003", "48d31887-5fad-4d73-a9f5-3c356e68a038", "http", "object id"),
    DemoDsr(
        "DEMO-1004",
        "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
        "queue",
        "queue message; the same person as DEMO-1002 (by object id): a DSR of its own",
    ),
    DemoDsr(
        "DEMO-1005",
        "nobody@contoso.example",
        "http",
        "a UPN no one in the tenant has: it fails, and says what to do",
        expect="failed",
    ),
)
#: What each product folder of an export holds (Graph names them; "(root)" is the container's
#: top level: Graph's receipt RequestInfo.json and its summary files).
PRODUCTS = {
    "(root)": "Graph's receipt and summary at the top level",
    "AzureAD": "directory profile and sign-in data",
    "Dynamics365": "Dynamics 365 records",
    "Exchange": "mailbox: mail, calendar, contacts",
    "OneDrive": "OneDrive files",
    "SharePoint": "SharePoint content",
    "Teams": "Teams chats and meetings",
}


#: The demo keeps exported data one (Graph) day after a DSR ended, not 30, so the retention run
#: has something to delete within the demo.
DEMO_RETENTION = {"EXPORT_RETENTION_DAYS": "1", "HISTORY_RETENTION_DAYS": "90"}
#: The subject's package needs the organisation's profile: the docs' filled-in sample (a path
#: relative to the app's root).
DEMO_PROFILE = {"ORGANISATION_PROFILE": "docs/organisation.sample.json"}
#: How many lines of the package's README.txt (its index as plain text) the demo shows: the
#: summary, up to (not including) the contacts, which a demo log need not carry.
README_LINES = 11
PACKAGE_TIMEOUT_SECONDS = 60.0
#: The DSR whose life after the export the demo follows.
FOLLOWED = "DEMO-1001"
LIFECYCLE_TIMEOUT_SECONDS = 60.0


def run_demo(state_dir: Path, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 only when every DSR completed, the followed DSR's package verified, and
    its evidence verifies with its deletion receipt."""
    options = StackOptions(state_dir=state_dir, speed=DEMO_SPEED, export_duration=timedelta(days=3))
    started = time.monotonic()
    # The app runs in this process and reads the process environment, as it would in Azure.
    for name, value in {**DEMO_RETENTION, **DEMO_PROFILE}.items():
        os.environ.setdefault(name, value)
    events = _EventCounter()
    app_logger = logging.getLogger("dsr_export")
    app_logger.addHandler(events)
    level, propagate = app_logger.level, app_logger.propagate
    # The events an operator sees are mostly INFO: counted here, not printed (the demo's
    # console shows errors only; the counter passes those on).
    app_logger.setLevel(logging.INFO)
    app_logger.propagate = False
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
        verdict = _summary(dsrs, finals, elapsed, graph_days, out)
        if verdict == 0:
            verdict = _after_the_export(stack, session, out)
    app_logger.removeHandler(events)
    app_logger.setLevel(level)
    app_logger.propagate = propagate
    events.report(out)
    return verdict


def _after_the_export(stack: DevStack, session: requests.Session, out: TextIO) -> int:
    """The followed DSR's life after its export: its package built and verified, a delivery
    link, the retention run with its deletion receipt, and the evidence chain verified. 0 when
    all of it happened."""
    endpoints = stack.endpoints()
    token = session.post(
        str(endpoints["tokenEndpoint"]),
        json={"roles": ["DSR.Read", "DSR.Manage"], "kind": "user"},
        timeout=30,
    ).json()["access_token"]
    manager = {"Authorization": f"Bearer {token}"}
    api = f"{stack.api_url}/exports/{FOLLOWED}"
    out.write(f"\nafter the export, {FOLLOWED} (as a privacy officer with DSR.Manage):\n")
    if _package(stack, session, manager, out) != 0:
        return 1
    link = session.post(f"{api}/download", headers=manager, timeout=30)
    if link.status_code != 201:
        out.write(f"  delivery link refused: {link.status_code} {link.text}\n")
        return 1
    out.write(
        f"  delivery link: {' + '.join(link.json()['permissions'])} on "
        f"{link.json()['container']}, expires "
        f"{link.json()['expiresAt']} (the URL is shown once to its caller, never logged)\n"
    )
    days = DEMO_RETENTION["EXPORT_RETENTION_DAYS"]
    out.write(f"  retention: data kept {days} day after the DSR ended (demo setting; default 30)\n")
    base = stack.api_url.removesuffix("/api")
    deadline = time.monotonic() + LIFECYCLE_TIMEOUT_SECONDS
    data: dict[str, Any] = {}
    while data.get("state") != "deleted":
        if time.monotonic() > deadline:
            out.write("  the retention run never deleted the data\n")
            return 1
        session.post(
            f"{base}/admin/functions/retention_sweep",
            headers={"x-functions-key": str(endpoints["masterKey"])},
            json={"input": ""},
            timeout=30,
        )
        time.sleep(1.0)  # the sweep runs in the background; look again a little later
        data = session.get(api, timeout=30).json().get("data") or {}
    found = session.get(f"{api}/evidence", timeout=30).json()
    verification = found["verification"]
    kinds = [record.get("kind") for record in found["records"] if isinstance(record, dict)]
    receipt = next(
        (
            r
            for r in found["records"]
            if isinstance(r, dict) and r.get("kind") == "retention_deleted"
        ),
        None,
    )
    out.write(f"  evidence: {verification['summary']} ({' > '.join(map(str, kinds))})\n")
    if receipt is not None:
        fields = receipt["data"]
        out.write(
            f"  deletion receipt {fields.get('receiptId')}: {fields.get('blobCount')} blobs, "
            f"{fields.get('totalBytes')} bytes, manifest sha256 "
            f"{str(fields.get('manifestSha256'))[:12]}..., deleted {receipt['at']} by "
            f"{fields.get('actorKind')}/{fields.get('actorId')}\n"
        )
    ok = bool(verification["ok"]) and receipt is not None
    out.write("  evidence verified, receipt written\n" if ok else "  evidence NOT complete\n")
    return 0 if ok else 1


def _package(
    stack: DevStack, session: requests.Session, manager: dict[str, str], out: TextIO
) -> int:
    """The subject's copy, as an operator makes it: ``POST .../package``, wait for it, fetch the
    zip from the delivery container, check it exactly as ``dsrctl verify`` does against the
    host's published keys, and show the first lines of its README.txt. 0 when it verified."""
    api = f"{stack.api_url}/exports/{FOLLOWED}/package"
    started = session.post(api, headers=manager, json={"language": "en"}, timeout=30)
    if started.status_code not in (200, 202):
        out.write(f"  package refused: {started.status_code} {started.text}\n")
        return 1
    deadline = time.monotonic() + PACKAGE_TIMEOUT_SECONDS
    answer = session.get(api, timeout=30)
    while answer.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.25)  # the build runs in its orchestration; look again a little later
        answer = session.get(api, timeout=30)
    if answer.status_code != 200:
        out.write(f"  package not built: {answer.status_code} {answer.text}\n")
        return 1
    package = answer.json()
    parts = [str(part["name"]) for part in package["parts"]]
    out.write(
        f"  package: {' + '.join(parts)} in {package['container']}, {package['fileCount']} "
        f"files, sha256 {str(package['packageSha256'])[:12]}...\n"
    )
    container = ContainerClient.from_connection_string(
        stack.environ["AzureWebJobsStorage"], str(package["container"])
    )
    folder = stack.state_dir / "packages" / FOLLOWED
    folder.mkdir(parents=True, exist_ok=True)
    for name in parts:
        with (folder / name).open("wb") as sink:
            container.download_blob(name).readinto(sink)
    # The part that holds the manifest (the last, in a split package) is the one to check.
    first = folder / parts[-1]
    # The CLI's own check (dsrctl verify runs this pure-domain function) against the keys the
    # host publishes, fetched as anyone would: anonymously, from the well-known route.
    jwks_url = f"{stack.api_url}/.well-known/jwks.json"
    jwks = requests.get(jwks_url, timeout=30).json()
    with contextlib.ExitStack() as opened:
        archives = {name: opened.enter_context(zipfile.ZipFile(folder / name)) for name in parts}
        check = receipt.verify_package(archives, jwks, first=first.name)
    out.write(f"  dsrctl verify {first.name} --jwks {jwks_url}\n")
    if check.ok and check.claims is not None:
        out.write(
            f"    OK: {check.files_checked} file(s), {check.claims.total_bytes} bytes, match the "
            f"manifest; the manifest matches the receipt; signed with {check.kid}\n"
        )
    else:
        out.write("    FAILED:\n" + "".join(f"    - {p}\n" for p in check.problems))
    with zipfile.ZipFile(first) as archive:
        readme = archive.read(README_MEMBER).decode("utf-8", errors="replace")
    out.write(f"  {README_MEMBER} (the index as plain text), first lines:\n")
    out.write("".join(f"    | {line}\n" for line in readme.splitlines()[:README_LINES]))
    return 0 if check.ok else 1


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
    throttling = _Throttling(stack, out, live=out.isatty())
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        throttling.note()
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
    return f"{request_id:<10} {doc.get('phase', '?'):<18} {_bar(doc)}  graph={graph:<9} {_due(doc)}"


def _due(doc: dict[str, Any]) -> str:
    """The legal deadline as a privacy engineer reads it: the date and the days left."""
    deadline = str(doc.get("deadline") or "")[:10]
    if not deadline:
        return ""
    left = doc.get("daysLeft")
    if doc.get("overdue"):
        return f"due {deadline} OVERDUE"
    return f"due {deadline} ({left} days left)" if left is not None else f"due {deadline}"


def _size(count: object) -> str:
    """Bytes in human units (KiB, MiB, GiB: powers of 1024, as the portal shows sizes)."""
    size = float(count) if isinstance(count, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class _Throttling:
    """Graph's 429s as they happen (the simulator's answers): each one is a durable timer in
    the DSR, not a retry storm."""

    def __init__(self, stack: DevStack, out: TextIO, *, live: bool) -> None:
        self._stack, self._out, self._live = stack, out, live
        self._seen = 0

    def note(self) -> None:
        graph = self._stack.graph
        if graph is None:
            return
        throttled = [r for r in graph.requests() if r.status == 429]
        for _ in throttled[self._seen :]:
            if not self._live:
                self._out.write(
                    "  Graph throttled a status poll (429, Retry-After: 120): "
                    "the DSR waits on a durable timer, then polls again\n"
                )
        self._seen = len(throttled)


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
    dsrs: list[DemoDsr],
    finals: dict[str, dict[str, Any]],
    elapsed: float,
    graph_days: float,
    out: TextIO,
) -> int:
    out.write(
        f"\n{'DSR':<10} {'result':<10} {'files':>5} {'size':>10}  {'SAS':<8} legal deadline\n"
    )
    ok = True
    for dsr in dsrs:
        doc = finals.get(dsr.request_id, {})
        phase = str(doc.get("phase"))
        ok = ok and phase == dsr.expect
        manifest = doc.get("manifest") or {}
        sas = doc.get("sas") or {}
        revoked = "revoked" if sas.get("revoked") else ("expires" if sas else "-")
        answered = "answered in time" if phase == "completed" and not doc.get("overdue") else ""
        out.write(
            f"{dsr.request_id:<10} {phase:<10} {manifest.get('blobCount', 0):>5} "
            f"{_size(manifest.get('totalBytes')):>10}  {revoked:<8} "
            f"{str(doc.get('deadline') or '')[:10]} {answered or _due(doc)}\n"
        )
        if manifest:
            out.write(f"{'':<10} manifest: {doc.get('container')}/manifest.json\n")
            products = ", ".join(sorted(manifest.get("products", {})))
            out.write(f"{'':<10} products: {products}\n")
        error = doc.get("error") or {}
        if error:
            out.write(f"{'':<10} error {error.get('code')}: {error.get('message', '')}\n")
            if error.get("hint"):
                out.write(f"{'':<10} fix: {error['hint']}\n")
    out.write("\nproducts: " + "; ".join(f"{k} = {v}" for k, v in PRODUCTS.items()) + "\n")
    verdict = (
        "every DSR ended as expected (the unknown user failed, the others completed)"
        if ok
        else "NOT every DSR ended as expected"
    )
    out.write(f"\n{verdict}: {graph_days:.1f} days of Graph time in {elapsed:.0f}s\n")
    return 0 if ok else 1


class _EventCounter(logging.Handler):
    """The app's log events during the demo, counted: what an operator finds in the workbook
    (traces, one line per event, `event key=value`)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = record.getMessage().split(" ", 1)[0]
        self.counts[event] = self.counts.get(event, 0) + 1
        if record.levelno >= logging.ERROR:
            logging.getLogger().handle(record)

    def report(self, out: TextIO) -> None:
        if not self.counts:
            return
        out.write("\nwhat the workbook shows of this run (traces, by event):\n")
        for event, count in sorted(self.counts.items(), key=lambda item: (-item[1], item[0])):
            out.write(f"  {event:<24} {count:>4}\n")
