"""Follow one DSR of the end-to-end suite through its log lines, by the documented query.

docs/operations.md ("One DSR, end to end") finds a DSR's lines with ``message has id``, then
``parse-kv`` and ``request_id == id``. This runs one DSR on the offline host (the real
function_app.py, as in tests/e2e) and applies that filter to the host's captured log: the lines
must tell the DSR's whole life in order, every app line that mentions the DSR must carry its
``request_id`` (else the query would miss it), and none may hold the UPN the ticket sent.
"""

from __future__ import annotations

import re
import uuid

import pytest

from dsr_export.domain.log_events import EVENTS
from tests.e2e.host import TERMINAL, HostProcess
from tests.ops.kql_sources import doc_queries
from tests.ops.logfmt import HostLine, event_of, host_lines, parse_kv

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

UPN = "alex.wilber@contoso.example"
#: A DSR submitted with a UPN, completed: the lifecycle lines in the order they happen.
LIFE = (
    "dsr_accepted",
    "user_resolved",
    "container_prepared",
    "export_submitted",
    "export_checked",
    "export_finalized",
    "dsr_finished",
)


def documented_query() -> str:
    (query,) = [q.text for q in doc_queries() if q.text.startswith('let id = "')]
    return query


def test_the_documented_query_filters_by_the_request_id_field() -> None:
    """What the test below emulates is what the doc says: keep this pair in step."""
    query = documented_query()
    assert re.search(r"^let lines = traces\n\s+\| where message has id\n", query, re.M)
    assert "| parse-kv message as (request_id: string)" in query
    assert "| where request_id == id;" in query
    assert "operation_Id in (operations)" in query


def dsr_lines(lines: list[HostLine], request_id: str) -> list[HostLine]:
    """The documented filter: ``message has id``, then ``request_id == id``."""
    return [
        line
        for line in lines
        if request_id in line.message and parse_kv(line.message).get("request_id") == request_id
    ]


def test_one_dsr_is_followed_end_to_end_through_its_log_lines(host: HostProcess) -> None:
    request_id = f"TRACE-{uuid.uuid4().hex[:8].upper()}"
    answer = host.post("/exports", {"requestId": request_id, "user": UPN})
    assert answer.status_code == 202, answer.text
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "completed", doc

    lines = host_lines(host.log_path)
    mine = dsr_lines(lines, request_id)
    events = [event_of(line.message) for line in mine]
    # Its whole life, in order (polls and callbacks may repeat or interleave).
    positions = [events.index(event) for event in LIFE]
    assert positions == sorted(positions), events
    assert events[-1] == "dsr_finished" or events.index("dsr_finished") > positions[-2]
    finished = parse_kv(mine[events.index("dsr_finished")].message)
    assert finished["phase"] == "completed"
    assert finished["instance_id"] == request_id
    # Every line is a declared event with declared fields only.
    for line in mine:
        event = event_of(line.message)
        assert event in EVENTS, line.message
        assert set(parse_kv(line.message)) <= set(EVENTS[event].fields), line.message
    # No app line mentions the DSR without carrying its request id (the query would miss it).
    app = [line for line in lines if line.logger == "dsr_export" and request_id in line.message]
    assert app == mine
    # Nothing personal: the UPN the ticket sent appears in none of the app's lines.
    assert not [line for line in lines if line.logger == "dsr_export" and UPN in line.message]
