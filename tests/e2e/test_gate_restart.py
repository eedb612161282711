"""DSRs waiting at the tenant's submit gate survive a host kill and go to Graph in deadline order.

The host runs as a person runs it (``python -m devhost serve``, fast clock). Graph's quota is
made tiny (two submits a day, refused ones not counted) and four DSRs arrive at once with
different legal deadlines: the idle gate lets them all through, Graph accepts two and refuses
two on quota (429 without Retry-After), and the gate learns the quota is spent: it holds the
two back, then lets one probe through an hour at a time. The host is killed while they wait;
after the restart, the queue (the gate entity's state), the waits and Graph's quota knobs carry
on, the two held back go to Graph earliest deadline first, and every DSR is submitted once and
completes. (The first two went through an idle gate at once, before it could know Graph's
quota: their order is Graph's, not the gate's.)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from devhost.graph import DEMO_DIRECTORY
from tests.e2e.host import FUNCTION_KEY, TERMINAL, ServeProcess, user_env

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

SPEED = 20_000  # a Graph day in about 4 real seconds
USER = DEMO_DIRECTORY["adele.vance@contoso.example"]


@pytest.fixture(autouse=True)
def every_evidence_chain_verifies() -> None:
    """This module's host keeps its own storage (see tests/e2e/test_restart.py)."""


def _exporting(host: ServeProcess, ids: dict[str, datetime]) -> int:
    """How many of the DSRs show Graph's export under way (their submit recorded)."""
    phases = [host.get(f"/exports/{rid}").json().get("phase") for rid in ids]
    return sum(phase in {"exporting", "finalizing", "completed"} for phase in phases)


def _phase(host: ServeProcess, request_id: str) -> str | None:
    phase: str | None = host.get(f"/exports/{request_id}").json().get("phase")
    return phase


def _gate(host: ServeProcess) -> dict[str, object]:
    """The home tenant's gate, as ``GET /api/gate`` shows it (counts and times)."""
    answer = host.get("/gate")
    assert answer.status_code == 200, answer.text
    view: dict[str, object] = answer.json()
    return view


def _serve_args(state: Path) -> list[str]:
    settings = state.parent / "no-local-settings.json"
    args = ["--port", "0", "--state", str(state), "--speed", str(SPEED)]
    args += ["--export-days", "1", "--function-key", FUNCTION_KEY]
    return [*args, "--settings", str(settings)]


def _set_quota(host: ServeProcess, **knobs: object) -> None:
    answer = requests.post(
        f"{host.graph}/_sim/quotas",
        json=knobs,
        verify=str(host.endpoints["caBundle"]),
        timeout=30,
    )
    answer.raise_for_status()


def test_dsrs_waiting_for_a_slot_survive_a_kill_and_each_submit_once(tmp_path: Path):
    state = tmp_path / "state"
    host = ServeProcess(state, user_env(), _serve_args(state))
    host.start()
    try:
        _set_quota(host, submits_per_day=2, submits_per_subject_per_day=None, refused_count=False)
        now = datetime.now(UTC)
        # Received 5, 15 and 25 days ago: the last has the earliest legal deadline.
        ids = {f"GATE-{age}": now - timedelta(days=age) for age in (5, 10, 15, 25)}
        for request_id in ids:
            body = {
                "requestId": request_id,
                "user": USER,
                "receivedAt": ids[request_id].isoformat(),
            }
            answer = host.post("/exports", body)
            assert answer.status_code == 202, answer.text
        # Kill once the day's two submits are posted and recorded (both DSRs exporting), so the
        # kill finds the other two waiting for a slot; a kill during a submit in flight is
        # tests/e2e/test_pipeline.py's and test_restart.py's case.
        deadline = time.monotonic() + 60
        while host.sim("quotas/usage")["submits"] < 2 or _exporting(host, ids) < 2:
            assert time.monotonic() < deadline, "the first two never reached Graph"
            time.sleep(0.1)
        first = {
            rid for rid in ids if _phase(host, rid) in {"exporting", "finalizing", "completed"}
        }
        # The gate learned that Graph's quota is spent (its operator view, through the
        # Durable client's entity read), and holds the two others back.
        deadline = time.monotonic() + 60
        while not ((view := _gate(host)).get("blockedUntil") and view["queued"] == 2):
            assert time.monotonic() < deadline, f"the gate never held the two back: {view}"
            time.sleep(0.1)
        host.kill()
        host.start()
        # Graph's quota knobs are Graph's state: they outlive the host, as a service's limits do.
        knobs = host.sim("quotas")
        assert (knobs["submits_per_day"], knobs["refused_count"]) == (2, False), knobs
        docs = {rid: host.wait_for(rid, TERMINAL, timeout=180) for rid in ids}
        assert {d["phase"] for d in docs.values()} == {"completed"}, docs
        stats = host.sim("stats")
        assert sorted(stats["submissionsByContainer"].values()) == [1] * len(ids)
        assert stats["operations"] == len(ids), "one export each"
        assert all(docs[rid].get("submittedAt") for rid in ids)
        # After the kill the gate admits the ones it held back earliest deadline first (the
        # oldest received has the earliest deadline).
        later = sorted(set(ids) - first, key=lambda rid: ids[rid])
        submitted = [docs[rid]["submittedAt"] for rid in later]
        assert submitted == sorted(submitted), dict(zip(later, submitted, strict=True))
        assert _gate(host)["queued"] == 0
    finally:
        host.stop()
