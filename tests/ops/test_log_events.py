"""The declared log events (dsr_export/domain/log_events.py), the code that logs them, the line
format KQL reads, and the queries that read them.

- every ``log_event`` call in the app names a declared event with declared fields (read from the
  source, wrappers such as the orchestrator's ``_log`` included), and ``log_event`` refuses
  anything else at run time;
- a line is logfmt that ``parse-kv`` reads back exactly, whatever the value holds;
- every event a query filters on is declared, and every key it parses is a field of one of them.
"""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsr_export.domain import log_events
from dsr_export.domain.log_events import ALL_FIELDS, EVENTS, ORCHESTRATOR_FIELDS, UndeclaredLogEvent
from dsr_export.domain.logs import log_event, logfmt_value
from tests.ops.kql_sources import ROOT, Query, all_queries
from tests.ops.log_calls import calls
from tests.ops.logfmt import event_of, parse_kv

#: The lifecycle events another part of the app logs, with the fields agreed for them.
LIFECYCLE = {
    "dsr_delivered": {"request_id", "caller_kind", "caller_id", "expires_at"},
    # The API's line: the ask (its id, what was asked, the deadline it was asked against).
    "dsr_extended": {
        "request_id",
        "ask_id",
        "previous_deadline",
        "extension_days",
        "extension_months",
        "reason_code",
        "caller_kind",
        "caller_id",
    },
    # The orchestrator's: the ask applied, and the deadline it gave.
    "deadline_extended": {
        "request_id",
        "instance_id",
        "deadline",
        "ask_id",
        "previous_deadline",
        "extension_days",
    },
    "dsr_retried": {
        "request_id",
        "attempt",
        "previous_phase",
        "previous_code",
        "caller_kind",
        "caller_id",
    },
    "dsr_erased": {
        "request_id",
        "receipt_id",
        "blob_count",
        "total_bytes",
        "caller_kind",
        "caller_id",
    },
    "retention_deleted": {
        "request_id",
        "receipt_id",
        "blob_count",
        "total_bytes",
        "retention_days",
    },
    "history_purged": {"request_id", "instances", "evidence", "phase"},
    "retention_run": {
        "due",
        "deleted",
        "purged",
        "failed",
        "skipped",
        "poison_cleared",
        "rejected_cleared",
    },
    "retention_failed": {"request_id", "reason"},
    "evidence_recorded": {"request_id", "kind", "seq"},
}


# ---------------------------------------------------------------------------------------------
# The call sites (tests/ops/log_calls.py reads them)


def test_the_scan_finds_the_log_calls() -> None:
    """Guard the scanner: an empty or partial scan would make the next test vacuous."""
    found = calls()
    events = {e for c in found for e in c.events}
    assert len(found) >= 25
    assert {
        "dsr_accepted",
        "graph_error",
        "callback_sent",
        "callback_refused",
        "dsr_finished",
    } <= events
    # The submit gate is an entity, not an orchestration: it runs once per operation (no replay,
    # no instance of a DSR) and logs per tenant, with the request id of the DSR it answered.
    orchestrator = [
        c
        for c in found
        if c.where.startswith("orchestrations/")
        and not c.where.startswith("orchestrations/submit_gate.py")
    ]
    assert orchestrator
    assert all(set(ORCHESTRATOR_FIELDS) <= c.fields for c in orchestrator)


def test_every_log_call_names_a_declared_event_with_declared_fields() -> None:
    for call in calls():
        for event in call.events:
            assert event in EVENTS, f"{call.where}: {event!r} is not declared in log_events.py"
            # tenant_id goes on every line of a tenant's DSR, not declared event by event.
            extra = call.fields - set(EVENTS[event].fields) - {TENANT_FIELD}
            assert not extra, f"{call.where}: {event} does not declare {sorted(extra)}"
            if EVENTS[event].request_scoped:
                assert "request_id" in call.fields, f"{call.where}: {event} needs request_id"


def test_the_lifecycle_events_are_declared_with_the_agreed_fields() -> None:
    for event, fields in LIFECYCLE.items():
        assert set(EVENTS[event].fields) == fields, event
    assert not EVENTS["retention_run"].request_scoped
    assert all(EVENTS[e].request_scoped for e in LIFECYCLE if e != "retention_run")


def test_no_field_collides_with_a_log_record_attribute() -> None:
    """The fields also go to ``extra``: a LogRecord attribute there raises in logging."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    reserved = set(vars(record)) | {"message", "asctime", "event"}
    assert not (ALL_FIELDS & reserved)


def test_no_declared_field_is_personal() -> None:
    personal = re.compile(r"upn|mail|user(_?name)?$|^user$|name$|display")
    assert not [f for f in ALL_FIELDS if personal.search(f)]


# ---------------------------------------------------------------------------------------------
# log_event at run time


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def line(event: str, **fields: object) -> logging.LogRecord:
    capture = _Capture()
    logger = logging.getLogger("tests.ops.log_events")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        log_event(event, level=logging.INFO, logger=logger, **fields)
    finally:
        logger.removeHandler(capture)
    (record,) = capture.records
    return record


def test_log_event_refuses_an_undeclared_event_or_field() -> None:
    with pytest.raises(UndeclaredLogEvent, match="'dsr_acepted' is not declared"):
        line("dsr_acepted", request_id="R-1")
    with pytest.raises(UndeclaredLogEvent, match=r"does not declare the fields \['requestid'\]"):
        line("dsr_duplicate", requestid="R-1")
    with pytest.raises(UndeclaredLogEvent, match="request_id is required"):
        line("dsr_duplicate", request_id=None, source="http")
    # An event about no DSR in particular may leave the request id out.
    assert line("retention_run", due=3, deleted=2, purged=2, failed=0, skipped=1).getMessage() == (
        "retention_run due=3 deleted=2 purged=2 failed=0 skipped=1"
    )


def test_a_line_is_logfmt_with_the_fields_in_extra() -> None:
    record = line(
        "callback_attempt_failed",
        request_id="RITM0012345",
        event_type="dsr.completed",
        message_id=None,
        reason='receiver said "no" (a=b) \\ twice\nand again',
    )
    message = record.getMessage()
    assert message == (
        "callback_attempt_failed request_id=RITM0012345 event_type=dsr.completed "
        'reason="receiver said \\"no\\" (a=b) \\\\ twice and again"'
    )
    assert parse_kv(message) == {
        "request_id": "RITM0012345",
        "event_type": "dsr.completed",
        "reason": 'receiver said "no" (a=b) \\ twice and again',
    }
    assert record.__dict__["request_id"] == "RITM0012345"
    assert record.__dict__["event"] == "callback_attempt_failed"
    assert "message_id" not in record.__dict__


def test_values_are_redacted_before_they_are_written() -> None:
    message = line(
        "retention_failed",
        request_id="R-9",
        reason="https://x.blob.core.windows.net/c?sig=abc&sp=r for adele@contoso.example",
    ).getMessage()
    assert "sig=abc" not in message
    assert "adele@" not in message
    assert parse_kv(message)["reason"].endswith("for <user>")


_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


@given(st.text(max_size=60))
def test_parse_kv_reads_back_any_value_on_one_line(value: str) -> None:
    message = f"evidence_recorded request_id=R-1 kind={logfmt_value(value)} seq=3"
    # Exactly the value, with each run of control characters (line breaks) as one space.
    assert parse_kv(message) == {"request_id": "R-1", "kind": _CONTROL.sub(" ", value), "seq": "3"}
    assert event_of(message) == "evidence_recorded"
    assert len(message.splitlines()) == 1


def test_a_bare_value_needs_no_quotes_and_an_empty_one_gets_them() -> None:
    assert logfmt_value("2026-12-01T09:30:00+00:00") == "2026-12-01T09:30:00+00:00"
    assert logfmt_value("dsr.completed") == "dsr.completed"
    assert logfmt_value("") == '""'
    assert logfmt_value("a=b") == '"a=b"'


def test_the_declarations_check_themselves() -> None:
    with pytest.raises(ValueError, match="must declare request_id"):
        log_events.LogEvent("x", ("reason",))
    with pytest.raises(ValueError, match="declared twice"):
        log_events.LogEvent("x", ("request_id", "request_id"))


# ---------------------------------------------------------------------------------------------
# The queries against the declarations

#: The tenant a line about a DSR belongs to (issue 21, TENANCY=multi; a line without one is the
#: app's own tenant's). It is not declared event by event: every line about a tenant's DSR
#: carries it, whatever the event. The workbook's Tenant filter and the alerts' TenantId
#: dimension read it of every event that names a DSR (request_id).
TENANT_FIELD = "tenant_id"
_STARTS = re.compile(r'message startswith "(\w+) "')
_PARSE_KV = re.compile(r"parse-kv message as \(([^)]*)\)")
_EVENT_EQ = re.compile(r'Event (?:==|!=) "(\w+)"|Event in \(([^)]*)\)')


def _keys(query: str) -> set[str]:
    keys = set()
    for listing in _PARSE_KV.findall(query):
        for item in listing.split(","):
            keys.add(item.split(":")[0].strip().strip("[]'"))
    return keys


@pytest.mark.parametrize("query", all_queries(), ids=[q.origin for q in all_queries()])
def test_a_query_reads_only_declared_events_and_their_fields(query: Query) -> None:
    events = set(_STARTS.findall(query.text))
    for single, many in _EVENT_EQ.findall(query.text):
        events.update([single] if single else re.findall(r'"(\w+)"', many))
    undeclared = events - set(EVENTS)
    assert not undeclared, f"{query.origin}: undeclared events {sorted(undeclared)}"
    keys = _keys(query.text)
    if not events:  # the per-DSR query: every line about a DSR carries request_id
        assert keys <= {"request_id"}, f"{query.origin}: parses {sorted(keys)} of no event"
        return
    allowed = {field for event in events for field in EVENTS[event].fields}
    if any("request_id" in EVENTS[event].fields for event in events):
        allowed.add(TENANT_FIELD)
    assert keys <= allowed, (
        f"{query.origin}: {sorted(keys - allowed)} are fields of none of {sorted(events)}"
    )


def test_the_operations_doc_explains_every_declared_event_with_its_fields() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    rows = {
        m["event"]: m["fields"]
        for m in re.finditer(r"^\| `(?P<event>\w+)` \| [^|]+ \| (?P<fields>[^|]*) \|", doc, re.M)
    }
    missing = set(EVENTS) - set(rows)
    assert not missing, f"docs/operations.md has no row for {sorted(missing)}"
    for name, event in EVENTS.items():
        assert re.findall(r"`(\w+)`", rows[name]) == list(event.fields), name


def test_a_poisoned_queue_line_names_the_dsr_when_the_message_had_a_valid_id() -> None:
    """The poisoned line is logged after the failure, from the message alone: it carries the
    request id when the body holds a valid one, so the per-DSR query finds it."""
    import azure.functions as func

    from intake.queue_intake import _message_request_id

    valid = func.QueueMessage(id="m-1", body=b'{"requestId": "RITM0012345", "user": "u"}')
    assert _message_request_id(valid) == "RITM0012345"
    for body in (b"not json", b'{"requestId": "a b"}', b"[1]"):
        assert _message_request_id(func.QueueMessage(id="m-2", body=body)) is None
