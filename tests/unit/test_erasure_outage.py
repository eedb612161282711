"""An erasure whose deletion went through but whose receipt could not be written (the evidence
account went down, or the host died, between the two) is receipted when it is sent again: once,
with what the export held, never a 409 saying there is nothing to delete."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import lifecycle
from dsr_export.domain.evidence import Kind
from tests.unit.intake_fakes import T0, FakeDurableClient, MemoryEvidence, body, intake_settings
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
