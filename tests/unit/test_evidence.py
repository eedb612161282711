"""The evidence log's chain: every DSR's log verifies; editing, removing, reordering or cutting
any record makes ``verify`` fail and name it; no record can carry a UPN.

The adapter (append blobs, concurrent writers, idempotency against storage) is proven against
Azurite in tests/integration/test_evidence_log.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsr_export import evidence_cli as cli
from dsr_export.adapters.evidence_log import EvidenceLog
from dsr_export.domain import evidence
from dsr_export.domain.evidence import (
    GENESIS,
    EvidenceRecord,
    EvidenceRefused,
    Kind,
    chain,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
REQUEST = "RITM0012345"
OBJECT_ID = "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
OPERATION = "0a1b2c3d-0000-4000-8000-123456789abc"
CONTAINER = "dsr-ritm0012345-0123456789abcdef"
MANIFEST_SHA = "ab" * 32
UPN = "adele.vance@contoso.onmicrosoft.com"

#: One DSR's whole life, every kind of record at least once, as the app would write it.
LIFECYCLE: list[tuple[Kind, dict[str, object]]] = [
    (
        Kind.RECEIVED,
        {
            "eventId": "received",
            "givenId": "ritm0012345",
            "source": "http",
            "regulation": "gdpr",
            "receivedAt": "2024-03-01T09:00:00+00:00",
            "deadline": "2024-04-01T09:00:00+00:00",
            "submitterKind": "application",
            "submitterId": "11111111-2222-3333-4444-555555555555",
            "submitterTenantId": "99999999-8888-7777-6666-555555555555",
            "userObjectId": OBJECT_ID,
        },
    ),
    (
        Kind.SUBMITTED,
        {
            "operationId": OPERATION,
            "container": CONTAINER,
            "sasMode": "stored-policy",
            "sasExpiry": "2024-04-30T09:30:00+00:00",
            "submitAttempt": 1,
            "userObjectId": OBJECT_ID,
        },
    ),
    (Kind.SUBMIT_RECOVERED, {"operationId": OPERATION, "container": CONTAINER, "lookups": 2}),
    (Kind.GRAPH_STATUS, {"operationId": OPERATION, "graphStatus": "running", "progress": 10}),
    (
        Kind.GRAPH_STATUS,
        {"operationId": OPERATION, "graphStatus": "succeeded", "previousStatus": "running"},
    ),
    (
        Kind.COMPLETED,
        {
            "operationId": OPERATION,
            "container": CONTAINER,
            "manifestSha256": MANIFEST_SHA,
            "blobCount": 3,
            "totalBytes": 8,
            "products": {"(root)": 1, "Exchange": 1, "Teams": 1},
        },
    ),
    (Kind.SAS_REVOKED, {"container": CONTAINER, "sasMode": "stored-policy", "revoked": True}),
    (
        Kind.CALLBACK,
        {"eventType": "dsr.completed", "webhookId": "msg_1", "attempts": 1, "httpStatus": 204},
    ),
    (
        Kind.EXPORT_DELIVERED,
        {"container": CONTAINER, "channel": "portal", "manifestSha256": MANIFEST_SHA},
    ),
    (
        Kind.EXTENSION_ASKED,
        {
            "askId": "ask_0123456789abcdef",
            "months": 2,
            "reasonCode": "complexity",
            "actorKind": "user",
            "actorId": OBJECT_ID,
        },
    ),
    (
        Kind.EXTENDED,
        {
            "askId": "ask_0123456789abcdef",
            "previousDeadline": "2024-04-01T09:00:00+00:00",
            "deadline": "2024-06-01T09:00:00+00:00",
            "extensionDays": 61,
            "reasonCode": "complexity",
            "actorKind": "user",
            "actorId": OBJECT_ID,
        },
    ),
    (Kind.FINISHED, {"phase": "cancelled", "errorCode": "Cancelled"}),
    (Kind.RETRIED, {"attempt": 2, "previousPhase": "cancelled", "actorKind": "user"}),
    (
        Kind.CALLBACK,
        {"eventType": "dsr.failed", "attempts": 4, "accepted": False, "errorCode": "Timeout"},
    ),
    (Kind.ERASED, {"container": CONTAINER, "receiptId": "rcpt-1", "blobCount": 3}),
    (Kind.RETENTION_DELETED, {"container": CONTAINER, "receiptId": "rcpt-2", "retentionDays": 30}),
    (
        Kind.PACKAGE_REFUSED,
        {"reasonCode": "EXPORT_CHANGED", "added": 1, "removed": 0, "altered": 0},
    ),
    (
        Kind.PACKAGED,
        {
            "container": "dsr-ritm-0-pkg",
            "packageSha256": "b" * 64,
            "manifestSha256": "c" * 64,
            "partCount": 1,
            "fileCount": 12,
            "totalBytes": 4096,
            "language": "de",
        },
    ),
    (
        Kind.PACKAGE_FILE_WITHHELD,
        {"sha256": "d" * 64, "reasonCode": "OTHERS_RIGHTS", "previewSha256": "b" * 64},
    ),
    (
        Kind.PACKAGE_REVIEWED,
        {"previewSha256": "b" * 64, "withheldCount": 1, "reasonCodes": "OTHERS_RIGHTS"},
    ),
    (Kind.HISTORY_PURGED, {"instancesDeleted": 1, "actorKind": "application"}),
]


def _records(count: int = len(LIFECYCLE), request_id: str = REQUEST) -> list[EvidenceRecord]:
    records: list[EvidenceRecord] = []
    for index in range(count):
        kind, data = LIFECYCLE[index % len(LIFECYCLE)]
        previous = records[-1] if records else None
        records.append(chain(previous, kind, T0 + timedelta(minutes=index), request_id, data))
    return records


def _lines(records: list[EvidenceRecord]) -> list[bytes]:
    return [record.to_line() for record in records]


def _edit(line: bytes, change, *, rehash: bool = False) -> bytes:
    document = json.loads(line)
    change(document)
    if rehash:
        body = {key: value for key, value in document.items() if key != "hash"}
        document["hash"] = evidence._digest(body)
    return evidence.canonical(document) + b"\n"


def _backdate(document: dict[str, object]) -> None:
    document["at"] = "2000-01-01T00:00:00+00:00"


def _broken_at(result: evidence.Verification, seq: int, line: int | None, why: str) -> None:
    assert not result.ok, result
    assert (result.seq, result.line) == (seq, line), result.summary()
    assert why in (result.reason or ""), result.summary()
    where = f" (line {line})" if line is not None else ""
    assert result.summary().startswith(f"BROKEN at record {seq}{where}: ")


# -- a whole log --------------------------------------------------------------------------------
def test_every_kind_of_record_chains_into_a_log_that_verifies():
    records = _records()
    assert {record.kind for record in records} == set(Kind)
    assert records[0].prev == GENESIS
    assert all(later.prev == earlier.hash for earlier, later in itertools.pairwise(records))
    result = verify(_lines(records), request_id=REQUEST.lower(), head=records[-1].hash)
    assert result.ok, result.summary()
    assert result.count == len(LIFECYCLE)
    assert result.summary() == f"OK: {len(LIFECYCLE)} records"
    assert result.head == records[-1].hash
    assert list(result.records) == records


def test_an_empty_log_is_broken_and_blank_lines_are_skipped():
    # F-8: a DSR's log opens with its receipt, so a log without records proves nothing.
    empties: list[list[str | bytes]] = [[], [b"", b"\n", "  "]]
    for empty in empties:
        _broken_at(verify(empty), 0, None, "empty: the log has no records")
        _broken_at(verify(empty, request_id=REQUEST), 0, None, "empty")
        _broken_at(verify(empty, head="ab" * 32), 0, None, "empty")
    lines = _lines(_records(3))
    spaced: list[str | bytes] = [lines[0], b"", "  ", lines[1].decode(), lines[2], b"\n"]
    assert verify(spaced).ok, "str or bytes, blank lines skipped"


def test_the_canonical_form_and_its_hash_are_stable():
    record = chain(
        None,
        Kind.RECEIVED,
        datetime(2024, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2))),
        "ritm-1",
        {"regulation": "ccpa", "regulationDays": 45, "submitterId": "ünïcode-id"},
    )
    expected_line = (
        '{"at":"2024-03-01T09:30:00+00:00","data":{"regulation":"ccpa","regulationDays":45,'
        '"submitterId":"ünïcode-id"},"hash":"'
        + record.hash
        + '","kind":"received","prev":"'
        + GENESIS
        + '","requestId":"RITM-1","seq":0}\n'
    ).encode()
    assert record.to_line() == expected_line, "sorted keys, no spaces, UTF-8, UTC, canonical id"
    # The hash is SHA-256 over the same canonical form without "hash", spelled out here so that
    # anyone can recompute it; pinned: a change to the form would orphan every log written.
    body = expected_line.decode().replace(f'"hash":"{record.hash}",', "").rstrip("\n")
    assert hashlib.sha256(body.encode()).hexdigest() == record.hash
    assert record.hash == "c9b432170262c57b284d69cb99c5603018dbb9135a8b01bdcb05a88c62e38bf9"
    again = chain(
        None,
        "received",
        datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
        "RITM-1",
        {"submitterId": "ünïcode-id", "regulationDays": 45, "regulation": "ccpa"},
    )
    assert again == record, "field order and time zone do not change the record"
    reformatted = json.dumps(json.loads(record.to_line()), indent=2)
    assert verify([reformatted.replace("\n", " ")]).ok, "the hash is over content, not layout"


# -- tampering is found and named ---------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(LIFECYCLE)))
def test_editing_any_record_names_it(index: int):
    lines = _lines(_records())
    lines[index] = _edit(lines[index], lambda doc: doc.update(at="2024-01-01T00:00:00+00:00"))
    _broken_at(verify(lines), index, index + 1, "hash mismatch")


def test_editing_a_data_field_or_the_seq_names_the_record():
    lines = _lines(_records())
    edited = list(lines)
    edited[5] = _edit(lines[5], lambda doc: doc["data"].update(blobCount=2))
    _broken_at(verify(edited), 5, 6, "hash mismatch: the record was edited")
    renumbered = list(lines)
    renumbered[3] = _edit(lines[3], lambda doc: doc.update(seq=4))
    _broken_at(verify(renumbered), 3, 4, "hash mismatch")


def test_editing_and_rehashing_a_record_breaks_the_next_one():
    lines = _lines(_records())
    lines[4] = _edit(lines[4], lambda doc: doc["data"].update(progress=99), rehash=True)
    _broken_at(verify(lines), 5, 6, "prev mismatch")


@pytest.mark.parametrize("index", range(len(LIFECYCLE) - 1))
def test_removing_any_record_names_where(index: int):
    lines = _lines(_records())
    del lines[index]
    _broken_at(verify(lines), index, index + 1, "seq gap")


def test_removing_a_record_and_renumbering_the_rest_is_found():
    records = _records()
    forged = [record.to_line() for record in records[:3]]
    for record in records[4:]:  # record 3 dropped, later ones renumbered and rehashed
        forged.append(
            _edit(record.to_line(), lambda doc: doc.update(seq=doc["seq"] - 1), rehash=True)
        )
    _broken_at(verify(forged), 3, 4, "prev mismatch")


@pytest.mark.parametrize("index", range(len(LIFECYCLE) - 1))
def test_reordering_any_two_records_names_the_first(index: int):
    lines = _lines(_records())
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    _broken_at(verify(lines), index, index + 1, "seq gap")


def test_a_repeated_record_is_named():
    lines = _lines(_records(5))
    lines.insert(3, lines[2])
    _broken_at(verify(lines), 3, 4, "out of order")


def test_a_truncated_log_is_named():
    records = _records()
    lines = _lines(records)
    cut = [*lines[:-1], lines[-1][:40]]
    _broken_at(verify(cut), len(lines) - 1, len(lines), "not JSON")
    shorter = lines[:-2]
    assert verify(shorter).ok, "whole records cut off the end leave a shorter, valid chain..."
    _broken_at(
        verify(shorter, head=records[-1].hash), len(shorter), None, "truncated"
    )  # ...which the head kept elsewhere catches
    _broken_at(verify([], head=records[0].hash), 0, None, "empty")


def test_a_record_of_another_dsr_is_named():
    lines = _lines(_records(6))
    edited = list(lines)
    edited[2] = _edit(lines[2], lambda doc: doc.update(requestId="RITM9"))
    _broken_at(verify(edited), 2, 3, "hash mismatch")
    forged = list(lines)
    forged[2] = _edit(lines[2], lambda doc: doc.update(requestId="RITM9"), rehash=True)
    _broken_at(verify(forged), 2, 3, "wrong request id")
    _broken_at(verify(lines, request_id="RITM9"), 0, 1, "wrong request id")
    other = _lines(_records(2, request_id="RITM9"))
    _broken_at(verify([*lines[:2], *other]), 2, 3, "out of order")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not an evidence record"),
        (b'{"seq": 0}', "not an evidence record"),
    ],
)
def test_a_line_that_is_no_record_is_named(line: bytes, why: str):
    lines = _lines(_records(3))
    lines.insert(1, line)
    _broken_at(verify(lines), 1, 2, why)


def test_a_duplicate_key_is_not_json():
    line = _lines(_records(1))[0].decode()
    doubled = line.replace('"seq":0', '"seq":0,"seq":0')
    _broken_at(verify([doubled]), 0, 1, "a key appears twice")


def test_a_log_must_open_with_the_received_record_of_its_dsr():
    # F-8: a log whose first record is not the DSR's receipt is not a DSR's whole log.
    records = _records(3)
    submitted = chain(None, Kind.SUBMITTED, T0, REQUEST, dict(LIFECYCLE[1][1]))
    _broken_at(verify([submitted.to_line()]), 0, 1, "does not start with its 'received' record")
    _broken_at(
        verify([submitted.to_line()], request_id=REQUEST), 0, 1, "it starts with a 'submitted' one"
    )
    _broken_at(verify(_lines(records), request_id="RITM9"), 0, 1, "wrong request id")
    assert verify(_lines(records[:1]), request_id=REQUEST).ok


def _deep(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def _with_data(line: bytes, raw_value: bytes) -> bytes:
    """A record line whose ``data`` gets one more field, written as raw JSON text."""
    return line.replace(b'"data":{', b'"data":{"x":' + raw_value + b",", 1)


MALFORMED: list[tuple[str, bytes, str]] = [
    ("NaN in data", _with_data(_lines(_records(2))[1], b"NaN"), "not JSON: NaN"),
    ("Infinity in data", _with_data(_lines(_records(2))[1], b"Infinity"), "not JSON: Infinity"),
    (
        "-Infinity as seq",
        _lines(_records(2))[1].replace(b'"seq":1', b'"seq":-Infinity'),
        "not JSON",
    ),
    ("a bare NaN", b"NaN", "not JSON: NaN"),
    ("100,000 nested arrays", _deep(100_000), "not JSON: nested too deeply"),
    ("100,000 nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ("deep in data", _with_data(_lines(_records(2))[1], _deep(5000)), "nested too deeply"),
    ("a string", b'"received"', "not an evidence record"),
    ("a number", b"42", "not an evidence record"),
    ("null", b"null", "not an evidence record"),
    ("an array", b"[]", "not an evidence record"),
    ("bad UTF-8", _lines(_records(2))[1].replace(b'"kind":"', b'"kind":"\xff', 1), "not UTF-8"),
    ("a lone surrogate", _with_data(_lines(_records(2))[1], b'"\\ud800"'), "not UTF-8"),
]


@pytest.mark.parametrize(
    ("line", "why"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_line_is_named_by_its_line_number_never_raised(line: bytes, why: str):
    # F-8: NaN, deep nesting, a non-object, bad UTF-8: a broken record, not an exception.
    lines = _lines(_records(3))
    lines[1] = line
    _broken_at(verify(lines), 1, 2, why)
    _broken_at(verify([text.decode("utf-8", "replace") for text in lines]), 1, 2, "")
    with pytest.raises(evidence.BrokenRecord):
        evidence.parse_record(line)
    document = evidence.evidence_document(REQUEST, lines)  # the evidence route's answer
    assert document["verification"]["broken"]["record"] == 1
    assert document["verification"]["broken"]["line"] == 2
    json.dumps(document, allow_nan=False)  # the route can always serialise it
    assert isinstance(document["records"][1], str), "kept as its text"
    again = verify(evidence.document_lines(json.loads(json.dumps(document))))
    _broken_at(again, 1, 2, "")


class _StoredLogs:
    """Just enough of a blob service for the evidence log adapter to read what is stored."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def get_container_client(self, name: str) -> _StoredLogs:
        return self

    def get_blob_client(self, name: str) -> SimpleNamespace:
        content = self.blobs[name]
        return SimpleNamespace(download_blob=lambda: SimpleNamespace(readall=lambda: content))


@pytest.mark.parametrize(
    ("line", "why"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_the_services_readers_of_a_stored_log_name_a_malformed_line(line: bytes, why: str):
    # F-8: the app's own readers (the evidence route, the lifecycle's records, the writer's
    # tail) raised ValueError or RecursionError on such a line, before.
    lines = _lines(_records(3))
    stored = _StoredLogs({evidence.blob_name(REQUEST): b"".join([lines[0], line, b"\n", lines[2]])})
    log = EvidenceLog(stored)  # type: ignore[arg-type]
    result = log.verify(REQUEST)
    _broken_at(result, 1, 2, why)
    assert [record.seq for record in result.records] == [0]
    read = log.read(REQUEST)
    assert len(read) == 3
    document = evidence.evidence_document(REQUEST, read)  # what the route answers
    json.dumps(document, allow_nan=False).encode("utf-8")
    assert document["verification"]["broken"] == {"record": 1, "line": 2, "reason": result.reason}
    parsed = []  # intake.service.evidence_records: the records that parse, the broken one skipped
    for text in read:
        with contextlib.suppress(evidence.BrokenRecord):
            parsed.append(evidence.parse_record(text).seq)
    assert parsed == [0, 2]


def test_the_services_readers_of_an_absent_log():
    log = EvidenceLog(_StoredLogs({}))  # type: ignore[arg-type]
    log._download = lambda name: b""  # type: ignore[method-assign]
    assert log.read(REQUEST) == []
    _broken_at(log.verify(REQUEST), 0, None, "empty")


def test_a_served_document_with_nan_or_a_lone_surrogate_is_broken_not_raised():
    # A service (or proxy) answering records that cannot be a record's canonical JSON.
    records = [record.to_dict() for record in _records(3)]
    records[1]["data"]["x"] = float("nan")
    _broken_at(verify(evidence.document_lines({"records": records})), 1, 2, "not JSON: NaN")
    records[1]["data"]["x"] = "\ud800"
    _broken_at(verify(evidence.document_lines({"records": records})), 1, 2, "not UTF-8")


def test_a_rehashed_record_must_still_be_a_valid_one():
    lines = _lines(_records(3))
    forged = _edit(lines[2], lambda doc: doc["data"].update(upn=UPN), rehash=True)
    _broken_at(verify([*lines[:2], forged]), 2, 3, "not a valid record")
    odd = _edit(lines[2], lambda doc: doc.update(kind="whatever"), rehash=True)
    _broken_at(verify([*lines[:2], odd]), 2, 3, "unknown record kind")


@given(
    count=st.integers(min_value=2, max_value=len(LIFECYCLE) * 2),
    data=st.data(),
)
def test_any_single_tampering_is_named_at_its_record(count: int, data: st.DataObject):
    lines = _lines(_records(count))
    index = data.draw(st.integers(min_value=0, max_value=count - 2))
    action = data.draw(st.sampled_from(["edit", "remove", "swap", "rehash"]))
    if action == "edit":
        lines[index] = _edit(lines[index], _backdate)
        expected = index
    elif action == "remove":
        del lines[index]
        expected = index
    elif action == "swap":
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
        expected = index
    else:
        lines[index] = _edit(lines[index], _backdate, rehash=True)
        expected = index + 1
    result = verify(lines)
    assert not result.ok
    assert result.seq == expected
    assert result.line == expected + 1


# -- no personal data ---------------------------------------------------------------------------
def _text_fields() -> list[tuple[Kind, str]]:
    return [
        (kind, name)
        for kind, fields in evidence.FIELDS.items()
        for name, spec in fields.items()
        if spec is str
    ]


@pytest.mark.parametrize(("kind", "name"), _text_fields(), ids=lambda v: str(v))
@pytest.mark.parametrize(
    "value", [UPN, "alice_contoso.com#EXT#@fabrikam.onmicrosoft.com", "x@y", "ADELE@CONTOSO"]
)
def test_no_text_field_takes_an_address(kind: Kind, name: str, value: str):
    with pytest.raises(EvidenceRefused) as refused:
        chain(None, kind, T0, REQUEST, {name: value})
    assert value not in str(refused.value), "the refusal does not repeat what it refused"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"requestedBy": "Adele Vance"}, "not a field"),
        ({"user": OBJECT_ID}, "not a field"),
        ({"upn": "adele"}, "not a field"),
        ({"eventId": UPN}, "an address"),
        ({"products": {UPN: 1}}, "an address"),
        ({"products": {"Exchange": "1"}}, "names to counts"),
        ({"blobCount": True}, "must be int"),
        ({"blobCount": "3"}, "must be int"),
        ({"blobCount": 2.5}, "must be int"),
        ({"container": 3}, "must be str"),
        ({"container": "https://acct.blob.core.windows.net/c?sv=1"}, "a URL"),
        ({"container": "c?SIG=abc"}, "a SAS signature"),
        ({"container": "x" * 201}, "longer than"),
    ],
)
def test_only_the_kinds_fields_with_their_types(data: dict[str, object], why: str):
    with pytest.raises(EvidenceRefused, match=why) as refused:
        chain(None, Kind.COMPLETED, T0, REQUEST, data)
    assert UPN not in str(refused.value)


def test_enumerated_fields_and_the_rest_of_the_envelope():
    with pytest.raises(EvidenceRefused, match="must be one of"):
        chain(None, Kind.FINISHED, T0, REQUEST, {"phase": "completed"})
    with pytest.raises(EvidenceRefused, match="must be one of"):
        chain(None, Kind.SUBMITTED, T0, REQUEST, {"sasMode": "account-key"})
    with pytest.raises(EvidenceRefused, match="unknown record kind"):
        chain(None, "resolved", T0, REQUEST, {})
    with pytest.raises(EvidenceRefused, match="timezone-aware"):
        chain(None, Kind.RECEIVED, datetime(2024, 1, 1), REQUEST, {})
    with pytest.raises(EvidenceRefused, match="requestId"):
        chain(None, Kind.RECEIVED, T0, UPN, {})
    first = chain(None, Kind.RECEIVED, T0, REQUEST, {})
    with pytest.raises(EvidenceRefused, match="differs from the log"):
        chain(first, Kind.SUBMITTED, T0, "RITM9", {})
    assert chain(first, Kind.SUBMITTED, T0, REQUEST.lower(), {}).seq == 1
    assert dict(chain(None, Kind.FINISHED, T0, REQUEST, {"errorCode": None}).data) == {}


def test_a_record_cannot_be_changed_after_it_is_made():
    record = _records(6)[5]
    with pytest.raises(TypeError):
        record.data["blobCount"] = 4  # type: ignore[index]
    products = record.data["products"]
    assert not isinstance(products, dict)
    with pytest.raises(TypeError):
        products["Exchange"] = 7  # type: ignore[index]


def test_no_upn_appears_in_any_record_of_a_whole_life():
    for line in _lines(_records(len(LIFECYCLE) * 2)):
        assert b"@" not in line
        assert UPN.encode() not in line


# -- idempotency, names, the endpoint's document -------------------------------------------------
def test_an_event_is_found_by_its_id():
    records = _records()
    assert evidence.find_event(records, "received") is records[0]
    assert records[0].event_id == "received"
    assert records[1].event_id is None
    assert evidence.find_event(records, "never") is None


def test_the_log_is_named_by_the_canonical_request_id():
    assert evidence.blob_name("ritm0012345") == "RITM0012345.jsonl"
    assert evidence.blob_name("a:b") == "A~B.jsonl"
    assert evidence.blob_name("a:b") != evidence.blob_name("a-b")
    assert evidence.blob_name("a.b") != evidence.blob_name("a-b")
    for bad in ("", "../x", "a/b", UPN, "a b", "x" * 101):
        with pytest.raises(EvidenceRefused):
            evidence.blob_name(bad)


def test_the_endpoint_document_carries_records_and_verdict_and_round_trips():
    records = _records(4)
    document = evidence.evidence_document("ritm0012345", _lines(records))
    assert document["requestId"] == REQUEST
    assert document["records"] == [record.to_dict() for record in records]
    assert document["verification"] == {
        "ok": True,
        "records": 4,
        "head": records[-1].hash,
        "summary": "OK: 4 records",
    }
    assert verify(evidence.document_lines(json.loads(json.dumps(document)))).ok
    broken = evidence.evidence_document(REQUEST, [*_lines(records)[:2], b"garbage"])
    assert broken["records"][2] == "garbage"
    assert broken["verification"]["broken"] == {"record": 2, "line": 3, "reason": "not JSON"}


# -- the offline verifier -----------------------------------------------------------------------
def _write(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "RITM0012345.jsonl"
    path.write_bytes(content)
    return str(path)


def test_the_cli_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = _write(tmp_path, b"".join(_lines(_records())))
    assert cli.main(["verify", path]) == 0
    assert capsys.readouterr().out == f"OK: {len(LIFECYCLE)} records\n"
    assert cli.main(["verify", path, "--request-id", "ritm0012345"]) == 0
    capsys.readouterr()
    assert cli.main(["verify", path, "--request-id", "OTHER"]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 0 (line 1): wrong request id")


def test_the_cli_names_the_first_broken_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    lines = _lines(_records())
    del lines[6]
    path = _write(tmp_path, b"".join(lines))
    assert cli.main(["verify", path]) == 1
    assert capsys.readouterr().out == (
        "BROKEN at record 6 (line 7): seq gap: expected record 6, found record 7 "
        "(removed or moved)\n"
    )
    records = _records()
    path = _write(tmp_path, b"".join(_lines(records[:-1])))
    assert cli.main(["verify", path, "--head", records[-1].hash]) == 1
    assert capsys.readouterr().out.startswith(f"BROKEN at record {len(records) - 1}: truncated")


def test_the_cli_reads_the_endpoints_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    records = _records(5)
    document = evidence.evidence_document(REQUEST, _lines(records))
    path = _write(tmp_path, json.dumps(document, indent=2).encode())
    assert cli.main(["verify", path]) == 0
    assert capsys.readouterr().out == "OK: 5 records\n"
    document["records"][1]["data"]["operationId"] = "forged"
    path = _write(tmp_path, json.dumps(document).encode())
    assert cli.main(["verify", path]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 1 (line 2): hash mismatch")
    single = _write(tmp_path, _lines(records)[0])
    assert cli.main(["verify", single]) == 0, "one record of JSON lines is not a document"


def test_the_cli_says_an_empty_log_is_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # F-8: "OK: 0 records" (exit 0) for an empty log, with or without --request-id, before.
    for content in (b"", b"\n\n"):
        path = _write(tmp_path, content)
        for extra in ([], ["--request-id", REQUEST]):
            assert cli.main(["verify", path, *extra]) == 1
            assert capsys.readouterr().out.startswith("BROKEN at record 0: empty: ")
    path = _write(tmp_path, json.dumps({"requestId": REQUEST, "records": []}).encode())
    assert cli.main(["verify", path, "--request-id", REQUEST]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 0: empty: ")


@pytest.mark.parametrize(
    ("line", "why"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_the_cli_names_a_malformed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes, why: str
):
    # F-8: NaN or 100,000-deep nesting raised out of the verifier before.
    lines = _lines(_records(3))
    path = _write(tmp_path, b"".join([lines[0], line, b"\n", lines[2]]))
    assert cli.main(["verify", path, "--request-id", REQUEST]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN at record 1 (line 2): ")
    assert why in out
    alone = _write(tmp_path, line)  # the whole file is tried as one JSON document first
    assert cli.main(["verify", alone]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 0 (line 1): ")


def test_the_cli_names_a_malformed_record_of_the_endpoints_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    records: list[object] = [record.to_dict() for record in _records(3)]
    records[1] = {"deep": json.loads(_deep(200))}
    path = _write(tmp_path, json.dumps({"records": records}).encode())
    assert cli.main(["verify", path]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 1 (line 2): not an evidence")
    text = json.dumps({"records": [records[0], "x"]}).replace('"x"', '{"a": NaN}')
    assert cli.main(["verify", _write(tmp_path, text.encode())]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 1 (line 2): not JSON: NaN")
    deep = b'{"records": [' + _deep(100_000) + b"]}"
    assert cli.main(["verify", _write(tmp_path, deep)]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at record 0 (line 1): not JSON")


def test_the_cli_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["verify", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_python_dash_m_runs_it_with_nothing_but_the_domain(tmp_path: Path):
    path = _write(tmp_path, b"".join(_lines(_records(3))))
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['evidence', 'verify', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('dsr_export.evidence_cli', run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    loaded = [m for m in sys.modules if m.startswith(('azure', 'requests', 'urllib3',"
        " 'dsr_export.adapters', 'dsr_export.settings', 'dsr_export.composition'))]\n"
        "    print(end.code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, path], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == "OK: 3 records\n0 []\n"
    ran = subprocess.run(
        [sys.executable, "-m", "dsr_export.evidence_cli", "verify", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (0, "OK: 3 records\n")
