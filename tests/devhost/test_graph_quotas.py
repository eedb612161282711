"""The simulator enforces Microsoft's documented quotas for exportPersonalData and its polls.

Microsoft Graph "service-specific throttling limits", "Identity and access data policy operation
service limits": per tenant 1,000 submits a day, 100 per subject a day, 10,000 other
dataPolicyOperation requests an hour, and a 429 without Retry-After. The counters run on the
simulator's clock: here a manual one, so a day passes between two lines.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from devhost.graph import GraphSimulator, Quotas
from devhost.tls import TlsFiles
from tests.clock import ManualClock
from tests.devhost.test_graph_sim import ADELE, ALEX, Graph, error_code, make_token

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Well inside a UTC day, so the calendar and rolling readings differ only where a test says.
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


@pytest.fixture
def graph(tls_files: TlsFiles, clock: ManualClock) -> Iterator[Graph]:
    with GraphSimulator(tls_files, clock=clock, tick_interval=None) as sim:
        client = Graph(sim, tls_files.ca_bundle, make_token())
        yield client
        client.session.close()


def _stranger() -> str:
    """An object id nobody has: the submit is counted, then answered 404."""
    return str(uuid.uuid4())


def _refused_on_quota(response: requests.Response) -> bool:
    """Graph's quota answer: 429 TooManyRequests in Graph's error shape, no Retry-After."""
    if response.status_code != 429:
        return False
    assert error_code(response) == "TooManyRequests"
    assert response.json()["error"]["innerError"]["request-id"] == response.headers["request-id"]
    assert "Retry-After" not in response.headers
    return True


def test_the_defaults_are_the_documented_quotas(graph: Graph) -> None:
    assert graph.sim.quotas == Quotas(
        submits_per_day=1000,
        submits_per_subject_per_day=100,
        polls_per_hour=10_000,
        window="rolling",
        refused_count=True,
    )


def test_the_1001st_submit_of_a_day_is_refused_without_retry_after(
    graph: Graph, clock: ManualClock
) -> None:
    statuses = [graph.submit(_stranger(), "https://x").status_code for _ in range(999)]
    assert set(statuses) == {404}, "each counted, then refused for what it is"
    assert graph.submit(_stranger(), "https://x").status_code == 404  # the 1,000th
    assert _refused_on_quota(graph.submit(_stranger(), "https://x"))  # the 1,001st
    assert _refused_on_quota(graph.submit(ADELE, "https://x")), "any subject"
    assert graph.poll("x").status_code == 400, "polls have their own quota"
    assert graph.resolve("adele.vance@contoso.example").status_code == 200, "not a quota route"
    assert graph.sim.quota_usage()["submits"] == 1002  # refused ones count (the default)

    clock.advance(DAY)  # a day in test time, no sleep: the first ones have aged out
    assert graph.submit(_stranger(), "https://x").status_code == 404


def test_the_101st_submit_for_one_subject_is_refused(graph: Graph) -> None:
    for _ in range(100):
        assert error_code(graph.submit(ADELE, None)) == "StorageLocationInvalid"
    assert _refused_on_quota(graph.submit(ADELE, None))
    assert _refused_on_quota(graph.submit(ADELE.upper(), None)), "the same subject"
    assert error_code(graph.submit(ALEX, None)) == "StorageLocationInvalid", "another subject"
    assert graph.sim.quota_usage()["submitsBySubject"] == {ADELE: 102, ALEX: 1}


def test_the_10001st_poll_of_an_hour_is_refused_without_retry_after(
    graph: Graph, clock: ManualClock
) -> None:
    # 9,990 as if sent already (10,000 requests over TLS take half a minute), then the wire.
    graph.sim.spend_quota(polls=9990)
    statuses = {graph.poll("x").status_code for _ in range(10)}  # up to the 10,000th
    assert statuses == {400}  # OperationNotFound, counted all the same
    assert graph.sim.quota_usage()["polls"] == 10_000
    assert _refused_on_quota(graph.poll("x"))  # the 10,001st
    assert graph.submit(_stranger(), "https://x").status_code == 404, "submits are apart"
    clock.advance(HOUR)
    assert graph.poll("x").status_code == 400


@pytest.mark.parametrize("refused_count", [True, False])
def test_rolling_window_and_whether_a_refused_submit_counts(
    graph: Graph, clock: ManualClock, refused_count: bool
) -> None:
    graph.sim.set_quotas(submits_per_day=2, refused_count=refused_count)
    assert graph.submit(_stranger(), "https://x").status_code == 404  # 12:00
    clock.advance(HOUR)
    assert graph.submit(_stranger(), "https://x").status_code == 404  # 13:00
    clock.advance(HOUR)
    assert _refused_on_quota(graph.submit(_stranger(), "https://x"))  # 14:00
    clock.advance(DAY - 2 * HOUR - timedelta(seconds=1))
    assert _refused_on_quota(graph.submit(_stranger(), "https://x")), "12:00 still counts"
    clock.advance(timedelta(seconds=1))  # 12:00 the next day: the first submit has aged out
    # Refused calls counted: the two at 14:00 and 11:59:59 fill the window with 13:00's.
    answer = graph.submit(_stranger(), "https://x")
    assert _refused_on_quota(answer) is refused_count


@pytest.mark.parametrize("refused_count", [True, False])
def test_calendar_day_in_utc_and_whether_a_refused_submit_counts(
    graph: Graph, clock: ManualClock, refused_count: bool
) -> None:
    graph.sim.set_quotas(submits_per_day=2, window="calendar", refused_count=refused_count)
    clock.advance(11 * HOUR)  # 23:00 UTC
    for _ in range(2):
        assert graph.submit(_stranger(), "https://x").status_code == 404
    assert _refused_on_quota(graph.submit(_stranger(), "https://x"))
    clock.advance(HOUR - timedelta(seconds=1))  # 23:59:59
    assert _refused_on_quota(graph.submit(_stranger(), "https://x"))
    clock.advance(timedelta(seconds=1))  # midnight UTC: a new day, whatever was refused
    for _ in range(2):
        assert graph.submit(_stranger(), "https://x").status_code == 404
    assert _refused_on_quota(graph.submit(_stranger(), "https://x"))


def test_calendar_hour_for_polls(graph: Graph, clock: ManualClock) -> None:
    graph.sim.set_quotas(polls_per_hour=3, window="calendar")
    clock.advance(59 * timedelta(minutes=1))  # 12:59
    assert [graph.poll("x").status_code for _ in range(3)] == [400] * 3
    assert _refused_on_quota(graph.poll("x"))
    clock.advance(timedelta(minutes=1))  # 13:00
    assert graph.poll("x").status_code == 400


def test_knobs_over_the_admin_api(graph: Graph) -> None:
    admin = f"{graph.sim.base_url}/_sim/quotas"
    changed = graph.session.post(
        admin, json={"submits_per_subject_per_day": 1, "window": "calendar"}
    )
    assert changed.status_code == 200
    assert changed.json() == {
        **Quotas().to_json(),
        "submits_per_subject_per_day": 1,
        "window": "calendar",
    }
    assert error_code(graph.submit(ADELE, None)) == "StorageLocationInvalid"
    assert _refused_on_quota(graph.submit(ADELE, None))
    usage = graph.session.get(f"{admin}/usage").json()
    assert usage == {"submits": 2, "submitsBySubject": {ADELE: 2}, "polls": 0}

    for bad in (
        {"window": "weekly"},
        {"polls_per_hour": "many"},
        {"refused_count": 1},
        {"submits_per_day": -1},
        {"no_such_knob": 1},
    ):
        assert graph.session.post(admin, json=bad).status_code == 400, bad
    assert graph.session.post(admin, json={"polls_per_hour": None}).json()["polls_per_hour"] is None

    assert graph.session.delete(admin).json() == Quotas().to_json()
    assert graph.session.get(f"{admin}/usage").json()["submits"] == 0, "a fresh tenant"
    assert error_code(graph.submit(ADELE, None)) == "StorageLocationInvalid"


def test_quotas_and_their_counters_survive_a_restart(
    tls_files: TlsFiles, clock: ManualClock, tmp_path: Path
) -> None:
    state = tmp_path / "graph-simulator.json"

    def simulator() -> GraphSimulator:
        return GraphSimulator(tls_files, clock=clock, tick_interval=None, state_file=state)

    with simulator() as sim:
        sim.set_quotas(submits_per_day=3, window="calendar")
        graph = Graph(sim, tls_files.ca_bundle, make_token())
        assert [graph.submit(_stranger(), "https://x").status_code for _ in range(3)] == [404] * 3
    with simulator() as again:
        assert again.quotas.submits_per_day == 3
        assert again.quotas.window == "calendar"
        graph = Graph(again, tls_files.ca_bundle, make_token())
        assert _refused_on_quota(graph.submit(_stranger(), "https://x")), "still counted"
        clock.advance(DAY)
        assert graph.submit(_stranger(), "https://x").status_code == 404

    # A state file written before the quotas were kept still starts, with the documented ones.
    data = json.loads(state.read_text())
    del data["quotas"]
    state.write_text(json.dumps(data))
    with simulator() as older:
        assert older.quotas == Quotas()
        assert older.quota_usage()["submits"] == 0


def test_both_api_versions_are_one_service_with_one_quota(graph: Graph) -> None:
    graph.sim.set_quotas(submits_per_subject_per_day=1, polls_per_hour=1)
    assert error_code(graph.submit(ADELE, None, version="beta")) == "StorageLocationInvalid"
    assert _refused_on_quota(graph.submit(ADELE, None, version="v1.0"))
    poll = f"{graph.sim.base_url}/v1.0/dataPolicyOperations/x"
    assert error_code(graph.session.get(poll, headers=graph.headers(), timeout=30)) == (
        "OperationNotFound"
    )
    assert _refused_on_quota(graph.poll("x"))  # beta, after one v1.0 poll
