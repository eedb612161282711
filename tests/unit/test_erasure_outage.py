"""Evidence writes that an outage or a host kill split from what they record, made whole when the
operator or the ticket sends again: an erasure whose deletion went through but whose receipt
could not be written is receipted (once, with what the export held, never a 409 saying there is
nothing to delete); a submission whose start was lost after its ``received`` record starts as
first received, with one ``received`` record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import lifecycle
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.evidence import Kind
from tests.unit.intake_fakes import (
    T0,
    FakeDurableClient,
    MemoryEvidence,
    body,
    intake_settings,
    valid_payload,
)
from tests.unit.test_lifecycle_routes import FakeStorage, _ended, _route

CONTAINER = "dsr-r-1-abc"


@pytest.fixture
def storage(swap: Callable[..., None]) -> Iterator[FakeStorage]:
    fake = FakeStorage()
    swap(export_storage=fake, clock=lambda: T0)
    with intake_settings():
        yield fake


def _completed(evidence_log: MemoryEvidence) -> None:
    record = entries.Completed(
        event_id="completed",
        operation_id="op-1",
        container=CONTAINER,
        blob_count=7,
        total_bytes=4096,
        products={"Exchange": 7},
        manifest_sha256="b" * 64,
    )
    evidence_log.write("R-1", record, T0)


def test_an_erasure_sent_again_after_its_receipt_was_lost_is_receipted_once(
    user_function, storage: FakeStorage, evidence_log: MemoryEvidence
):
    client = FakeDurableClient()
    client.add(
        "R-1", runtime="Completed", custom_status=_ended("completed"), output=_ended("completed")
    )
    _completed(evidence_log)
    # The first DELETE deleted the container, then the evidence account stopped answering.
    assert storage.held == {}
    again = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "Ada asked"}
    )
    assert again.status_code == 200, body(again)  # before: 409, "the DSR has no exported data"
    receipt = body(again)
    assert receipt["receiptId"] == lifecycle.receipt_id("R-1", [CONTAINER]), "as if not lost"
    assert (receipt["blobCount"], receipt["totalBytes"]) == (7, 4096)
    assert receipt["manifestSha256"] == "b" * 64
    third = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "again"}
    )
    assert third.status_code == 409
    assert receipt["receiptId"] in body(third)["detail"]
    erased = [r for r in evidence_log.records["R-1"] if r.kind is Kind.ERASED]
    assert [r.data["receiptId"] for r in erased] == [receipt["receiptId"]]


def test_a_dsr_without_a_completed_export_still_has_nothing_to_erase(
    user_function, storage: FakeStorage, evidence_log: MemoryEvidence
):
    client = FakeDurableClient()
    client.add("R-1", runtime="Completed", custom_status=_ended("failed"), output=_ended("failed"))
    answer = _route(
        user_function, "erase_data", client, "DELETE", "exports/R-1/data", {"reason": "x"}
    )
    assert answer.status_code == 409
    assert not [r for r in evidence_log.records.get("R-1", []) if r.kind is Kind.ERASED]


# -- intake: a resend after the first submission's start was lost -------------------------------


class _LostStart(FakeDurableClient):
    """The task hub as a host killed (or storage stopped) after ``received`` was written: the
    first ``start`` raises, the ones after work."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def start(self, name: str, instance_id: str, payload: Any) -> bool:
        if not self.lost:
            self.lost += 1
            raise ConnectionError("the host went away")
        return await super().start(name, instance_id, payload)


def test_a_resend_after_a_lost_start_starts_as_first_received_with_one_receipt(
    swap: Callable[..., None], evidence_log: MemoryEvidence
):
    from intake.service import start_or_get

    swap(clock=lambda: T0)
    client = _LostStart()
    caller = Caller("application", "ticketing-a", frozenset({Role.SUBMIT, Role.READ}))
    payload = valid_payload("NEW-2")
    with intake_settings():
        with pytest.raises(ConnectionError):
            asyncio.run(start_or_get(client, payload, now=T0, source="http", caller=caller))
        later = T0 + timedelta(minutes=3)
        asyncio.run(start_or_get(client, payload, now=later, source="http", caller=caller))
    received = [r for r in evidence_log.records["NEW-2"] if r.kind is Kind.RECEIVED]
    # Before: a second, correcting ``received`` with the resend's time and a later deadline.
    assert len(received) == 1, [r.data for r in received]
    [(_, _, started)] = [s for s in client.started if s[1] == "NEW-2"]
    assert started["receivedAt"] == T0.isoformat() == received[0].data["receivedAt"]
    assert started["legalDeadline"] == received[0].data["deadline"]
