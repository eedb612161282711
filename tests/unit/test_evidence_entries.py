"""The typed evidence entries say what :data:`dsr_export.domain.evidence.FIELDS` allows: every
field of every entry is one its kind may carry, so an entry never builds a record the log
refuses."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

from dsr_export.domain import evidence
from dsr_export.domain import evidence_entries as entries
from dsr_export.domain.evidence import EVENT_ID, FIELDS, Kind


@pytest.mark.parametrize("entry", entries.ENTRIES, ids=lambda e: e.__name__)
def test_every_field_of_an_entry_is_one_its_kind_carries(entry: type[entries.Entry]) -> None:
    names = {entries._camel(f.name) for f in fields(entry) if f.name != "event_id"}
    assert names <= set(FIELDS[entry.KIND]), names - set(FIELDS[entry.KIND])


def test_every_kind_the_app_writes_has_an_entry() -> None:
    assert {entry.KIND for entry in entries.ENTRIES} == set(Kind)


def test_an_entry_is_chained_with_its_event_id_and_without_its_empty_fields() -> None:
    entry = entries.Finished(
        event_id="finished", phase="failed", error_code="X", error_category=None, operation_id=None
    )
    at = datetime(2026, 3, 1, tzinfo=UTC)
    record = evidence.chain(None, entry.KIND, at, "RITM0001", entry.data())
    assert dict(record.data) == {EVENT_ID: "finished", "phase": "failed", "errorCode": "X"}


def test_a_deletion_carries_only_its_own_kind_s_fields() -> None:
    receipt: dict[str, Any] = {
        "event_id": "r1",
        "receipt_id": "r1",
        "container": "c",
        "container_count": 1,
        "blob_count": 2,
        "total_bytes": 3,
        "manifest_sha256": None,
    }
    erased = entries.deletion(Kind.ERASED, reason_sha256="ab", ended_at="x", **receipt)
    assert erased.KIND is Kind.ERASED
    assert "endedAt" not in erased.data()
    kept = entries.deletion(Kind.RETENTION_DELETED, reason_sha256="ab", ended_at="x", **receipt)
    assert kept.KIND is Kind.RETENTION_DELETED
    assert "reasonSha256" not in kept.data()
    with pytest.raises(ValueError, match="not a deletion"):
        entries.deletion(Kind.RECEIVED, **receipt)
