"""Chaos, bounded: about 50 DSRs against a Graph that throttles, fails, drops connections (after
doing the work, too) and loses submits between receipt and command, while the host is killed
twice mid-work. Every DSR must complete with exactly one export at Graph, nobody watching."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from tests.e2e.host import TERMINAL, HostProcess, host_env

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
