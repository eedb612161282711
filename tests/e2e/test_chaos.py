"""Chaos, bounded: about 50 DSRs against a Graph that throttles, fails, drops connections (after
doing the work, too) and loses submits between receipt and command, while the host is killed
twice mid-work; the export storage stopped at the very moment Graph checks a SAS; and a small
seeded run of storage outages with host kills (``make chaos`` is the full one). Every DSR must
complete with exactly one export at Graph and whole evidence, nobody watching."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite, outage_ports
from devhost.durable import FastClock
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import evidence
from dsr_export.domain.request import container_name
from tests.e2e import storage_chaos
from tests.e2e.host import (
    GRAPH_ROLES,
    TERMINAL,
    HostProcess,
    export_container,
    host_env,
    identity_with_roles,
)

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

DSRS = 48


def _faults(graph: GraphSimulator) -> None:
    graph.set_faults(
        throttle_next=25,
        throttle_retry_after=120,  # longer than the client sleeps on: durable timers
        error_next=12,
        error_status=503,
        error_retry_after=120,
        drop_next=10,
        drop_after_processing=True,
        fail_before_posting_next=2,
        routes={"submit", "poll", "resolve"},
    )


def _statuses(host: HostProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for request_id in ids:
        try:
            answer = host.get(f"/exports/{request_id}")
        except OSError:  # the host is being killed or restarted
            continue
        if answer.status_code == 200:
            found[request_id] = answer.json()
    return found


def _until(host: HostProcess, ids: list[str], enough: int, timeout: float) -> dict[str, Any]:
    """Poll until ``enough`` DSRs are past submitting (or terminal, when enough == len)."""
    deadline = time.monotonic() + timeout
    docs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        docs = _statuses(host, ids)
        wanted = TERMINAL if enough == len(ids) else TERMINAL | {"exporting", "finalizing"}
        if sum(doc["phase"] in wanted for doc in docs.values()) >= enough:
            return docs
        time.sleep(0.2)
    return docs


def test_every_dsr_completes_once_through_faults_and_two_host_kills(
    tmp_path: Path,
    azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
):
    users = [e2e_graph.add_user(f"chaos{n}@contoso.example") for n in range(DSRS)]
    process = HostProcess(tmp_path / "host", host_env(azurite, e2e_identity, e2e_graph, tls_files))
    ids = [f"CHAOS-{uuid.uuid4().hex[:8].upper()}" for _ in users]
    process.start()
    try:
        _faults(e2e_graph)
        for request_id, user in zip(ids, users, strict=True):
            assert (
                process.post("/exports", {"requestId": request_id, "user": user}).status_code == 202
            )
        _until(process, ids, DSRS // 3, timeout=120)
        process.kill()  # mid-work: some submitting, some exporting
        process.start()
        _faults(e2e_graph)
        _until(process, ids, 2 * DSRS // 3, timeout=120)
        process.kill()
        process.start()
        docs = _until(process, ids, DSRS, timeout=300)
    finally:
        e2e_graph.reset_faults()
        process.stop()
    phases = {request_id: doc["phase"] for request_id, doc in docs.items()}
    assert phases == dict.fromkeys(ids, "completed"), {
        r: (d["phase"], d.get("error")) for r, d in docs.items() if d["phase"] != "completed"
    }
    per_user = e2e_graph.submissions_by_user()
    assert [per_user.get(user, 0) for user in users] == [1] * DSRS, "exactly one export each"
    assert not any(
        (doc.get("error") or {}).get("code") == "SubmitOutcomeUnknown" for doc in docs.values()
    )


@pytest.fixture
def own_azurite(tls_files: TlsFiles) -> Iterator[Azurite]:
    """Storage of the test's own, to stop and start: the session's serves every other test."""
    with Azurite(tls_files, ports=outage_ports()) as storage:
        yield storage


def test_storage_down_when_graph_checks_the_sas_is_waited_out_with_one_export(
    tmp_path: Path,
    own_azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
):
    user = e2e_graph.add_user(f"outage-{uuid.uuid4().hex[:8]}@contoso.example")
    request_id = f"OUTAGE-{uuid.uuid4().hex[:8].upper()}"
    back = threading.Timer(2.0, own_azurite.resume)  # hours of the fast clock
    once = threading.Lock()

    def stop_storage(user_id: str) -> None:
        if user_id == user.lower() and once.acquire(blocking=False):  # the first submit only
            own_azurite.interrupt()  # Graph is about to check the SAS through the storage
            back.start()

    process = HostProcess(
        tmp_path / "host", host_env(own_azurite, e2e_identity, e2e_graph, tls_files)
    )
    process.start()
    e2e_graph.before_storage_check = stop_storage
    try:
        assert process.post("/exports", {"requestId": request_id, "user": user}).status_code == 202
        doc = process.wait_for(request_id, TERMINAL, timeout=240)
    finally:
        e2e_graph.before_storage_check = None
        back.join(timeout=60)
        process.stop()
    assert back.finished.is_set(), "the storage was stopped at the submit"
    assert doc["phase"] == "completed", doc.get("error")  # before: failed, configuration
    assert doc["container"] == container_name(request_id, 2), "a fresh container"
    assert e2e_graph.submissions_by_user().get(user) == 1, "exactly one export"
    first = export_container(own_azurite, tls_files, container_name(request_id, 1))
    assert first.get_container_access_policy()["signed_identifiers"] == [], "old SAS revoked"
    log = process.log_path.read_text()
    assert "storage_unavailable" in log
    assert 'waiting_for="export storage"' in log
    assert "submit_waits_for_storage" in log
    assert "resubmit=1" in log
    chain = export_container(own_azurite, tls_files, EVIDENCE_CONTAINER).download_blob(
        evidence.blob_name(request_id)
    )
    lines = chain.readall().decode().splitlines()
    assert storage_chaos.check_chain(lines, request_id, "completed") is None


def test_storage_outages_and_host_kills_lose_and_duplicate_nothing(
    tmp_path: Path, own_azurite: Azurite, tls_files: TlsFiles
):
    """A small, seeded ``make chaos``: the storage down for minutes to hours of the fast clock,
    three times at random moments (one of them as Graph checks a SAS), and the host killed
    twice, while DSRs are accepted, submit, poll, write their evidence and finish, and an
    operator builds the packages of three completed DSRs and erases the data of three others."""
    plan = storage_chaos.Plan(
        dsrs=16,
        outages=3,
        kills=2,
        outage_fast_seconds=(20 * 60, 3 * 3600),
        span=30.0,
        seed=7,
        speed=4000.0,
        settle=240.0,
        at_submit=1,
        intake_span=15.0,
        graph_faults=False,  # the test above has them; here a struck submit must resubmit
        packages=3,
        erasures=3,
    )
    clock = FastClock(plan.speed)
    with (
        GraphSimulator(
            tls_files, clock=clock.now, export_duration=timedelta(days=1), seed=3, tick_interval=0.2
        ) as graph,
        identity_with_roles(graph, GRAPH_ROLES) as identity,
    ):
        report = storage_chaos.run(
            plan,
            state=tmp_path / "host",
            azurite=own_azurite,
            identity=identity,
            graph=graph,
            tls=tls_files,
            say=lambda line: None,
        )
    summary = "\n".join(report.lines())
    assert report.completed == plan.dsrs, (summary, report.failed)
    assert (report.lost, report.duplicated, report.without_export) == ([], [], []), summary
    assert report.chains_verified == plan.dsrs, (summary, report.broken_chains)
    assert report.packages_verified == plan.packages, (summary, report.package_problems)
    assert report.erasures_done == plan.erasures, (summary, report.erasure_problems)
    assert (len(report.outages), report.kills) == (plan.outages, plan.kills), summary
    assert report.storage_retry_lines > 0, "the host's log says what it waited for"
    assert report.at_submit == plan.at_submit, summary
    assert report.resubmitted >= 1, "the submit the outage struck went to a fresh container"
    assert report.submit_waits_lines >= 1, summary
