"""Each attempt of a DSR is a generation of its own in the evidence: a retried DSR's ending is
recorded, not taken for the earlier attempt's (event ids unique per generation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dsr_export.domain import steps
from dsr_export.domain.evidence import Kind
from tests.unit.intake_fakes import T0, MemoryEvidence, app_settings


class FakeStorage:
    """The export account as finalize_export uses it: every SAS revocation succeeds."""

    def revoke(self, container: str) -> bool:
        return True


@pytest.fixture(autouse=True)
def _parts(swap: Callable[..., None]) -> Iterator[None]:
    swap(export_storage=FakeStorage(), clock=lambda: T0)
    with app_settings(
        EXPORT_SAS_MODE="user-delegation",
        EXPORT_STORAGE_BLOB_ENDPOINT="https://export.blob.core.windows.net",
    ):
        yield


def _finalize(user_function: Callable[[str], Any], container: str, **extra: Any) -> None:
    step = steps.FinalizeExport(
        request_id="R-1",
        container=container,
        write_manifest=False,
        ending="failed",
        error_code="StorageLocationInvalid",
        **extra,
    )
    user_function(steps.FINALIZE_EXPORT.name)(step.to_dict())


def test_a_retried_dsr_records_its_own_revocation_and_ending(
    user_function, evidence_log: MemoryEvidence
):
    _finalize(user_function, "dsr-r-1-a")
    _finalize(user_function, "dsr-r-1-a")  # the same attempt's activity, retried: once
    _finalize(user_function, "dsr-r-1-b", attempt=2)
    records = evidence_log.records["R-1"]
    revoked = [r.data["container"] for r in records if r.kind is Kind.SAS_REVOKED]
    assert revoked == ["dsr-r-1-a", "dsr-r-1-b"]
    assert [r.kind for r in records].count(Kind.FINISHED) == 2
    assert len({r.event_id for r in records}) == len(records)
