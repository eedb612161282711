"""Chaos with storage outages: DSRs run on the offline host while the storage (Azurite: export
containers, evidence logs, queues) is stopped for minutes to hours of the fast clock's time at
random moments, several times, the host is killed now and then, and Graph throttles and fails.

Nobody steers a DSR through its export. An operator acts after it, through the outages and
kills alike: as DSRs complete, some get their subject's package built (``POST .../package``,
asked again whenever a build ends failed) and some get their data erased (``DELETE .../data``,
sent again while it answers an error). Afterwards every DSR must have reached its end, at Graph
exactly one export per DSR, every package be complete and verify (``dsrctl verify``'s check
against the host's published keys), every erasure be done with exactly one receipt and its
containers gone, and every evidence log verify: a whole chain that starts with the DSR's
receipt, holds each event once, and for a completed DSR its submit, its completion and its SAS
revocation, for a packaged one one ``packaged`` record of that package, for an erased one one
``erased`` record of that receipt. The host's log must say what it waited for.

Used by ``tests/e2e/test_chaos.py`` (a small, seeded run in ``make test``) and by ``make chaos``
(``python -m tests.e2e.storage_chaos``: 200 DSRs, prints completed / lost / duplicated / chains
verified / packages / erasures, exits 1 below 99.5 % completed or on any loss, duplicate,
broken chain, unverified package or erasure without its one receipt).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import random
import re
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite, outage_ports
from devhost.durable import FastClock
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles, make_tls_files
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence, receipt
from dsr_export.domain.request import container_name
from tests.e2e.host import (
    FUNCTION_KEY,
    GRAPH_ROLES,
    TERMINAL,
    HostProcess,
    export_container,
    host_env,
    identity_with_roles,
)


@dataclass(frozen=True)
class Plan:
    """One chaos run: how many DSRs, outages and kills, spread over ``span`` real seconds."""

    dsrs: int
    outages: int
    kills: int
    #: Each outage lasts between these (fast-clock seconds; log-uniform). Stopping and starting
    #: Azurite itself takes a second or two of real time, which sets the shortest.
    outage_fast_seconds: tuple[float, float]
    span: float
    seed: int
    speed: float
    #: Real seconds to wait, after the last event, for every DSR to end.
    settle: float
    graph_faults: bool = True
    #: Of the outages, how many begin at the very moment Graph checks a SAS (the first submit
    #: after their scheduled time): the moment that used to fail DSRs as misconfigured.
    at_submit: int = 0
    #: Real seconds over which the DSRs arrive (a ticket system sends them one by one).
    intake_span: float = 0.0
    #: Of the DSRs, how many get their package built, and how many (others) their data erased,
    #: as soon as they complete.
    packages: int = 0
    erasures: int = 0


@dataclass
class Report:
    """What became of a run's DSRs, their exports and their evidence."""

    dsrs: int
    speed: float
    phases: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    exports: dict[str, int] = field(default_factory=dict)
    broken_chains: list[str] = field(default_factory=list)
    chains_verified: int = 0
    outages: list[tuple[float, float]] = field(default_factory=list)
    kills: int = 0
    #: Outages that began at the very moment Graph checked a SAS.
    at_submit: int = 0
    storage_retry_lines: int = 0
    storage_unavailable_lines: int = 0
    submit_waits_lines: int = 0
    resubmitted: int = 0
    #: The operator's side: packages asked for and verified, builds asked again after one
    #: failed; erasures asked for and done (one receipt each), deletes sent again.
    packages_asked: int = 0
    packages_verified: int = 0
    package_rebuilds: int = 0
    package_problems: list[str] = field(default_factory=list)
    erasures_asked: int = 0
    erasures_done: int = 0
    erasure_resends: int = 0
    erasure_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def completed(self) -> int:
        return sum(phase == "completed" for phase in self.phases.values())

    @property
    def lost(self) -> list[str]:
        """DSRs accepted but never seen to end (no status, or still running at the end)."""
        return sorted(rid for rid, phase in self.phases.items() if phase not in TERMINAL)

    @property
    def failed(self) -> dict[str, str]:
        return {
            rid: self.errors.get(rid, "?")
            for rid, phase in self.phases.items()
            if phase in TERMINAL and phase != "completed"
        }

    @property
    def duplicated(self) -> list[str]:
        """DSRs with more than one export at Graph."""
        return sorted(rid for rid, count in self.exports.items() if count > 1)

    @property
    def without_export(self) -> list[str]:
        """Completed DSRs with no export at Graph (impossible unless something lied)."""
        return sorted(
            rid
            for rid, phase in self.phases.items()
            if phase == "completed" and not self.exports[rid]
        )

    def lines(self) -> list[str]:
        # As they happened (stopping and starting Azurite included), on the fast clock.
        fast_hours = [real * self.speed / 3600 for real, _ in self.outages]
        outage_text = ", ".join(f"{hours:.2f} h" for hours in fast_hours) or "none"
        return [
            f"DSRs:             {self.dsrs}",
            f"completed:        {self.completed} ({100 * self.completed / self.dsrs:.1f} %)",
            f"failed:           {len(self.failed)} {dict(Counter(self.failed.values()))}",
            f"lost:             {len(self.lost)}",
            f"duplicated:       {len(self.duplicated)} (DSRs with more than one export at Graph)",
            f"no export:        {len(self.without_export)} (completed without one)",
            f"chains verified:  {self.chains_verified} of {self.dsrs}"
            + (f"; broken: {self.broken_chains[:5]}" if self.broken_chains else ""),
            f"storage outages:  {len(self.outages)} (fast clock: {outage_text}); "
            f"{self.at_submit} began as Graph checked a SAS",
            f"packages:         {self.packages_verified} of {self.packages_asked} complete and "
            f"verified ({self.package_rebuilds} asked again after a failed build)"
            + (f"; problems: {self.package_problems[:3]}" if self.package_problems else ""),
            f"erasures:         {self.erasures_done} of {self.erasures_asked} done with one "
            f"receipt ({self.erasure_resends} deletes sent again)"
            + (f"; problems: {self.erasure_problems[:3]}" if self.erasure_problems else ""),
            f"host kills:       {self.kills}",
            f"host log:         storage_retry x{self.storage_retry_lines}, "
            f"storage_unavailable x{self.storage_unavailable_lines}, "
            f"submit_waits_for_storage x{self.submit_waits_lines}; "
            f"{self.resubmitted} DSRs resubmitted into a fresh container",
            f"real time:        {self.seconds:.0f} s",
        ]


def _graph_faults(graph: GraphSimulator, dsrs: int) -> None:
    graph.set_faults(
        throttle_next=max(2, dsrs // 8),
        throttle_retry_after=120,
        error_next=max(1, dsrs // 16),
        error_status=503,
        error_retry_after=120,
        drop_next=max(1, dsrs // 20),
        drop_after_processing=True,
        routes={"submit", "poll", "resolve"},
    )


def _schedule(plan: Plan, rng: random.Random) -> list[tuple[float, str, float]]:
    """(real second, action, fast seconds) sorted; outages never overlap. ``down@submit``
    arms an outage that begins at the next SAS check by Graph."""
    low, high = plan.outage_fast_seconds
    events: list[tuple[float, str, float]] = []
    # The first while DSRs are accepted (evidence of their receipt), the others anywhere; those
    # at a submit while DSRs still arrive (each DSR submits moments after it is accepted).
    intake = max(plan.intake_span, 0.1 * plan.span)
    starts = [(rng.uniform(0.0, 0.1 * plan.span), "down")]
    starts += [(rng.uniform(0.0, 0.9 * intake), "down@submit") for _ in range(plan.at_submit)]
    starts += [
        (rng.uniform(0.1 * plan.span, plan.span), "down")
        for _ in range(plan.outages - 1 - plan.at_submit)
    ]
    free_from = 0.0
    for start, action in sorted(starts):
        fast = math.exp(rng.uniform(math.log(low), math.log(high)))
        begin = max(start, free_from)
        # An outage at a submit may begin a little later than armed: keep room for that.
        end = begin + fast / plan.speed + (_SUBMIT_WAIT if action == "down@submit" else 0.0)
        events += [(begin, action, fast), (end, "up", fast)]
        free_from = end + 1.0
    events += [(rng.uniform(0.1 * plan.span, plan.span), "kill", 0.0) for _ in range(plan.kills)]
    return sorted(events)


def _chaos(
    plan: Plan,
    rng: random.Random,
    host: HostProcess,
    azurite: Azurite,
    graph: GraphSimulator,
    report: Report,
    say: Any,
    trouble: list[BaseException],
) -> None:
    """Play the schedule: storage down and up, host killed and started again."""
    try:
        pending_start, down_at, clock0 = False, 0.0, time.monotonic()
        for at, action, fast in _schedule(plan, rng):
            if action != "up":  # an outage lasts its length from when it began
                time.sleep(max(0.0, clock0 + at - time.monotonic()))
            if action == "down":
                azurite.interrupt()
                down_at = time.monotonic()
                say(f"  {at:6.1f} s storage down for {fast / 3600:.2f} h of the fast clock")
            elif action == "down@submit":
                hit = _down_at_next_submit(graph, azurite)
                down_at = time.monotonic()
                report.at_submit += hit
                where = "at a submit" if hit else "(no submit came)"
                say(f"  {down_at - clock0:6.1f} s storage down {where} for {fast / 3600:.2f} h")
            elif action == "up":
                time.sleep(max(0.0, down_at + fast / plan.speed - time.monotonic()))
                azurite.resume()
                report.outages.append((time.monotonic() - down_at, fast))
                say(f"  {time.monotonic() - clock0:6.1f} s storage up")
                if pending_start:
                    pending_start = False
                    host.start(timeout=120)
            else:
                host.kill()
                report.kills += 1
                say(f"  {at:6.1f} s host killed")
                pending_start = not _restart(host, azurite)
        if pending_start:
            host.start(timeout=120)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        trouble.append(exc)


#: Real seconds an outage armed for a submit waits for one before it begins anyway.
_SUBMIT_WAIT = 20.0


def _down_at_next_submit(graph: GraphSimulator, azurite: Azurite) -> bool:
    """Stop the storage the moment Graph is about to check a SAS; True when a submit came
    (otherwise it is stopped after ``_SUBMIT_WAIT`` all the same)."""
    struck = threading.Event()
    once = threading.Lock()

    def strike(user_id: str) -> None:
        if once.acquire(blocking=False):
            azurite.interrupt()
            struck.set()

    graph.before_storage_check = strike
    try:
        came = struck.wait(_SUBMIT_WAIT)
    finally:
        graph.before_storage_check = None
    if not came and once.acquire(blocking=False):
        azurite.interrupt()
    struck.wait(1.0)
    return came


def _restart(host: HostProcess, azurite: Azurite) -> bool:
    """Start the killed host again; False when it could not come up while the storage is down
    (then it is started once the storage is back)."""
    try:
        host.start(timeout=120)
    except (RuntimeError, TimeoutError):
        if not azurite.interrupted:
            raise
        return False
    return True


def _status(host: HostProcess, request_id: str) -> dict[str, Any] | None:
    try:
        answer = host.get(f"/exports/{request_id}")
    except OSError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _submit_all(
    host: HostProcess, ids: list[str], users: list[str], deadline: float, pace: float
) -> None:
    """Send every DSR as a ticket system does, one every ``pace`` seconds, and again until it is
    accepted (a 503 while the evidence account is down, a connection refused while the host
    restarts)."""
    waiting = dict(zip(ids, users, strict=True))
    first = True
    while waiting and time.monotonic() < deadline:
        for request_id, user in list(waiting.items()):
            if first:
                time.sleep(pace)
            try:
                answer = host.post("/exports", {"requestId": request_id, "user": user})
            except OSError:
                continue
            if answer.status_code in (200, 202):
                del waiting[request_id]
        first = False
        if waiting:
            time.sleep(0.2)
    if waiting:
        raise AssertionError(f"{len(waiting)} DSRs never accepted: {sorted(waiting)[:5]}")


@dataclass
class _Aftercare:
    """The operator's work on one completed DSR: its package or its erasure."""

    request_id: str
    action: str  # "package" or "erase"
    asked: bool = False
    done: bool = False
    #: The package's state document (200), or the erasure's receipt.
    answer: dict[str, Any] = field(default_factory=dict)


def _operator(
    host: HostProcess,
    work: list[_Aftercare],
    report: Report,
    deadline: float,
    stop: threading.Event,
) -> None:
    """Package or erase each DSR of ``work`` once it completed, as an operator would through
    outages and restarts: an error or a refused connection is tried again a little later, a
    build that ended failed is asked for again."""
    while not stop.is_set() and time.monotonic() < deadline:
        pending = [item for item in work if not item.done]
        if not pending:
            return
        for item in pending:
            try:
                _act(host, item, report)
            except (OSError, ValueError):
                continue  # the host restarts, or answered half: again next round
        time.sleep(0.3)


def _act(host: HostProcess, item: _Aftercare, report: Report) -> None:
    if not item.asked:
        doc = _status(host, item.request_id)
        if doc is None or doc["phase"] != "completed":
            return
    path = f"/exports/{item.request_id}"
    if item.action == "erase":
        answer = _delete(host, f"{path}/data", {"reason": "chaos: the subject asked"})
        report.erasure_resends += item.asked
        item.asked = True
        if answer.status_code == 200:
            item.done, item.answer = True, answer.json()
        elif answer.status_code == 409:
            item.done = True  # done before, its answer lost: the checks below find the receipt
        return
    if not item.asked:
        answer = host.post(f"{path}/package", {"language": "en"})
        item.asked = answer.status_code in (200, 202)
        return
    answer = host.get(f"{path}/package")
    if answer.status_code == 200:
        item.done, item.answer = True, answer.json()
    elif answer.status_code in (404, 409):  # the build ended failed (or never started)
        again = host.post(f"{path}/package", {"language": "en"})
        report.package_rebuilds += again.status_code in (200, 202)


def _delete(host: HostProcess, path: str, body: object) -> Any:
    return requests.delete(
        f"{host.api}{path}", json=body, headers={"x-functions-key": FUNCTION_KEY}, timeout=30
    )


def _aftercare_plan(plan: Plan, ids: list[str], rng: random.Random) -> list[_Aftercare]:
    chosen = rng.sample(ids, min(len(ids), plan.packages + plan.erasures))
    return [
        _Aftercare(rid, "package" if n < plan.packages else "erase") for n, rid in enumerate(chosen)
    ]


def _check_package(
    item: _Aftercare, azurite: Azurite, tls: TlsFiles, jwks: dict[str, Any]
) -> str | None:
    """Why this DSR's package is not complete and verifiable (None when it is)."""
    if not item.done:
        return f"{item.request_id}: no package built"
    package = item.answer
    container = export_container(azurite, tls, str(package["container"]))
    parts = [str(part["name"]) for part in package["parts"]]
    with contextlib.ExitStack() as opened:
        archives = {
            name: opened.enter_context(
                zipfile.ZipFile(io.BytesIO(container.download_blob(name).readall()))
            )
            for name in parts
        }
        check = receipt.verify_package(archives, jwks, first=parts[-1])
    if not check.ok:
        return f"{item.request_id}: {check.problems[:2]}"
    return None


def _check_erasure(item: _Aftercare, azurite: Azurite, tls: TlsFiles) -> str | None:
    """Why this DSR's erasure is not done (None when it is): its containers must be gone."""
    if not item.done:
        return f"{item.request_id}: never erased"
    # Every container of the DSR starts with its first's name (fresh ones, the delivery one).
    account = BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        connection_verify=tls.ca_bundle,
    )
    found = account.list_containers(name_starts_with=container_name(item.request_id))
    left = [c.name for c in found]
    return f"{item.request_id}: containers left: {left}" if left else None


def check_chain(
    lines: list[str],
    request_id: str,
    phase: str,
    aftercare: _Aftercare | None = None,
) -> str | None:
    """Why this DSR's evidence is not whole (None when it is)."""
    verification = evidence.verify(lines, request_id=request_id)
    if not verification.ok:
        return f"{request_id}: {verification.summary()}"
    records = verification.records
    if not records or records[0].kind is not evidence.Kind.RECEIVED:
        return f"{request_id}: does not start with its receipt"
    ids = Counter(record.event_id for record in records if record.event_id)
    twice = [event_id for event_id, count in ids.items() if count > 1]
    if twice:
        return f"{request_id}: written twice: {twice}"
    kinds = Counter(record.kind for record in records)
    if kinds[evidence.Kind.RECEIVED] != 1:
        return f"{request_id}: {kinds[evidence.Kind.RECEIVED]} receipts"
    if phase == "completed":
        if not (kinds[evidence.Kind.SUBMITTED] or kinds[evidence.Kind.SUBMIT_RECOVERED]):
            return f"{request_id}: no submitted record"
        for kind in (evidence.Kind.COMPLETED, evidence.Kind.SAS_REVOKED):
            if kinds[kind] != 1:
                return f"{request_id}: {kinds[kind]} {kind.value} records"
    if aftercare is not None:
        return _check_aftercare_records(records, aftercare)
    return None


def _check_aftercare_records(
    records: tuple[evidence.EvidenceRecord, ...] | list[evidence.EvidenceRecord],
    item: _Aftercare,
) -> str | None:
    """The one ``packaged`` record of the package answered, or the one ``erased`` receipt."""
    rid = item.request_id
    if item.action == "package":
        sums = [r.data.get("packageSha256") for r in records if r.kind is evidence.Kind.PACKAGED]
        wanted = item.answer.get("packageSha256")
        if sums != [wanted]:
            return f"{rid}: packaged records {sums}, the package is {wanted}"
        return None
    erased = [r.data.get("receiptId") for r in records if r.kind is evidence.Kind.ERASED]
    if len(erased) != 1:
        return f"{rid}: {len(erased)} erasure receipts"
    if item.answer and item.answer.get("receiptId") != erased[0]:
        return f"{rid}: answered receipt {item.answer.get('receiptId')}, recorded {erased[0]}"
    return None


def _settle(
    host: HostProcess,
    ids: list[str],
    report: Report,
    docs: dict[str, dict[str, Any]],
    deadline: float,
) -> None:
    """Poll every DSR's status until all are terminal or the deadline passes; the last status
    documents land in ``docs`` and their phases and error codes in ``report``."""
    while time.monotonic() < deadline:
        for request_id in ids:
            if report.phases.get(request_id) in TERMINAL:
                continue
            doc = _status(host, request_id)
            if doc is not None:
                docs[request_id] = doc
                report.phases[request_id] = doc["phase"]
                report.errors[request_id] = str((doc.get("error") or {}).get("code"))
        if all(report.phases.get(request_id) in TERMINAL for request_id in ids):
            return
        time.sleep(0.5)


def run(
    plan: Plan,
    *,
    state: Path,
    azurite: Azurite,
    identity: ManagedIdentityEndpoint,
    graph: GraphSimulator,
    tls: TlsFiles,
    say: Any = print,
) -> Report:
    """Run ``plan`` against these services (``azurite`` is stopped and started: give it one of
    its own) and report."""
    rng = random.Random(plan.seed)  # noqa: S311 - a seeded schedule is the point
    started = time.monotonic()
    tag = uuid.UUID(int=rng.getrandbits(128)).hex[:6]
    users = [graph.add_user(f"storm{tag}-{n}@contoso.example") for n in range(plan.dsrs)]
    ids = [f"STORM-{tag.upper()}-{n:04d}" for n in range(plan.dsrs)]
    host = HostProcess(state, host_env(azurite, identity, graph, tls), speed=plan.speed)
    report = Report(dsrs=plan.dsrs, speed=plan.speed)
    docs: dict[str, dict[str, Any]] = {}
    # Its own draw: the chaos schedule of a seed stays what it was without an operator.
    work = _aftercare_plan(plan, ids, random.Random(plan.seed + 1))  # noqa: S311
    report.packages_asked = sum(item.action == "package" for item in work)
    report.erasures_asked = len(work) - report.packages_asked
    jwks: dict[str, Any] = {}
    host.start()
    try:
        if plan.graph_faults:
            _graph_faults(graph, plan.dsrs)
        # The chaos starts with the intake: the ticket system keeps sending meanwhile.
        trouble: list[BaseException] = []
        chaos = threading.Thread(
            target=_chaos,
            args=(plan, rng, host, azurite, graph, report, say, trouble),
            daemon=True,
        )
        chaos.start()
        # The operator packages and erases completed DSRs while the chaos goes on.
        stop = threading.Event()
        operator = threading.Thread(
            target=_operator,
            args=(host, work, report, time.monotonic() + 600 + plan.span + plan.settle, stop),
            daemon=True,
        )
        operator.start()
        _submit_all(host, ids, users, time.monotonic() + 600, plan.intake_span / plan.dsrs)
        say(f"{plan.dsrs} DSRs accepted")
        chaos.join()
        if trouble:
            raise trouble[0]
        settle_by = time.monotonic() + plan.settle
        _settle(host, ids, report, docs, settle_by)
        operator.join(timeout=max(1.0, settle_by - time.monotonic()))
        stop.set()
        operator.join()
        jwks = requests.get(f"{host.api}/.well-known/jwks.json", timeout=30).json()
        for request_id in ids:
            report.phases.setdefault(request_id, "unknown")
        report.resubmitted = sum(
            bool(re.search(r"-a\d+$", str(doc.get("container") or ""))) for doc in docs.values()
        )
    finally:
        graph.reset_faults()
        host.stop()
        if azurite.interrupted:
            azurite.resume()
    per_user = graph.submissions_by_user()
    report.exports = {
        request_id: per_user.get(user, 0) for request_id, user in zip(ids, users, strict=True)
    }
    _check_aftercare(work, report, azurite, tls, jwks)
    by_id = {item.request_id: item for item in work}
    logs = export_container(azurite, tls, EVIDENCE_CONTAINER)
    for request_id in ids:
        try:
            content = logs.download_blob(evidence.blob_name(request_id)).readall().decode()
        except Exception as exc:  # noqa: BLE001 - a missing log is a broken chain
            report.broken_chains.append(f"{request_id}: no log ({type(exc).__name__})")
            continue
        problem = check_chain(
            content.splitlines(), request_id, report.phases[request_id], by_id.get(request_id)
        )
        if problem is None:
            report.chains_verified += 1
        else:
            report.broken_chains.append(problem)
    text = host.log_path.read_text(errors="replace")
    report.storage_retry_lines = text.count("storage_retry ")
    report.storage_unavailable_lines = text.count("storage_unavailable ")
    report.submit_waits_lines = text.count("submit_waits_for_storage")
    report.seconds = time.monotonic() - started
    return report


def _check_aftercare(
    work: list[_Aftercare],
    report: Report,
    azurite: Azurite,
    tls: TlsFiles,
    jwks: dict[str, Any],
) -> None:
    for item in work:
        if item.action == "package":
            problem = _check_package(item, azurite, tls, jwks)
            report.packages_verified += problem is None
            if problem is not None:
                report.package_problems.append(problem)
        else:
            problem = _check_erasure(item, azurite, tls)
            report.erasures_done += problem is None
            if problem is not None:
                report.erasure_problems.append(problem)


def main(argv: list[str] | None = None) -> int:
    """``make chaos``: the full run, on services of its own."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.storage_chaos", description=__doc__)
    parser.add_argument("--dsrs", type=int, default=200)
    parser.add_argument("--outages", type=int, default=8)
    parser.add_argument("--kills", type=int, default=8)
    # Slow enough that an outage can be minutes of the fast clock: stopping and starting
    # Azurite takes a few real seconds (at 300: a one-day export takes about 5 minutes).
    parser.add_argument("--speed", type=float, default=300.0)
    # Long enough that outages and kills go on while DSRs complete (from about 290 s: a day of
    # Graph's time after the last arrived) and the operator packages and erases them.
    parser.add_argument("--span", type=float, default=480.0, help="real seconds of chaos")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--packages", type=int, default=20, help="DSRs packaged once completed")
    parser.add_argument("--erasures", type=int, default=20, help="DSRs erased once completed")
    args = parser.parse_args(argv)
    plan = Plan(
        dsrs=args.dsrs,
        outages=args.outages,
        kills=args.kills,
        # Ten minutes to four and a half hours of the fast clock (as planned: stopping and
        # starting Azurite adds its few real seconds; the report shows them as they were).
        outage_fast_seconds=(600.0, 4.5 * 3600),
        span=args.span,
        seed=args.seed,
        speed=args.speed,
        settle=900.0,
        at_submit=2,
        intake_span=120.0,
        packages=args.packages,
        erasures=args.erasures,
    )
    with tempfile.TemporaryDirectory(prefix="storage-chaos-") as tmp:
        root = Path(tmp)
        tls = make_tls_files(root / "tls")
        clock = FastClock(plan.speed)
        with (
            Azurite(tls, ports=outage_ports()) as azurite,
            GraphSimulator(
                tls, clock=clock.now, export_duration=timedelta(days=1), seed=11, tick_interval=0.2
            ) as graph,
            identity_with_roles(graph, GRAPH_ROLES) as identity,
        ):
            report = run(
                plan, state=root / "host", azurite=azurite, identity=identity, graph=graph, tls=tls
            )
    print("\n".join(report.lines()))
    good = (
        report.completed >= 0.995 * plan.dsrs
        and not report.lost
        and not report.duplicated
        and report.chains_verified == plan.dsrs
        and report.packages_verified == report.packages_asked
        and report.erasures_done == report.erasures_asked
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
