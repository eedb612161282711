"""The status document: one typed model, one serializer, and the subject's package in it.

The document is :class:`~dsr_export.domain.status.StatusDocument`; every route answers its
:meth:`~dsr_export.domain.status.StatusDocument.to_wire`. What it says of the package comes
from the evidence (``packaged``, ``package_reviewed``, a ``package-link`` delivery): hashes,
counts and a time, never a file's name. The OpenAPI side is in tests/unit/test_openapi.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import lifecycle
from dsr_export.domain.evidence import EvidenceRecord, Kind
from dsr_export.domain.status import PackageStage, PackageState, ReviewState
from tests.unit.intake_fakes import (
    T0,
    FakeDurableClient,
    MemoryEvidence,
    body,
    call,
    intake_settings,
    request,
)

PACKAGE_SHA = "ab" * 32
PREVIEW_SHA = "cd" * 32
#: A part's name: the status may say how many parts, never what they are called.
PART = "RITM0042-package.zip"


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _completed(log: MemoryEvidence, request_id: str = "RITM0042") -> None:
    log.write(
        request_id,
        entries.Received(
            event_id="received",
            source="http",
            regulation="gdpr",
            regulation_days=30,
            received_at=T0.isoformat(),
            deadline=(T0 + timedelta(days=30)).isoformat(),
            submitter_kind="functionKey",
            submitter_id="sha256:0123456789abcdef",
            submitter_tenant_id=None,
            user_object_id=None,
        ),
        T0,
    )
    log.write(
        request_id,
        entries.Completed(
            event_id="completed",
            operation_id="op-1",
            container="dsr-ritm0042-0000",
            blob_count=2,
            total_bytes=10,
            products={"Exchange": 2},
            manifest_sha256="ef" * 32,
        ),
        _at(1),
    )


def _packaged(log: MemoryEvidence, sha: str, at: datetime, parts: int = 2) -> None:
    log.write(
        "RITM0042",
        entries.Packaged(
            event_id=f"packaged-{sha[:32]}",
            container="dsr-ritm0042-0000-pkg",
            package_sha256=sha,
            manifest_sha256="12" * 32,
            export_manifest_sha256="ef" * 32,
            part_count=parts,
            file_count=7,
            total_bytes=1234,
            generation=1,
            language="en",
        ),
        at,
    )


def _reviewed(log: MemoryEvidence, at: datetime) -> None:
    log.write(
        "RITM0042",
        entries.PackageReviewed(
            event_id=f"reviewed-{PREVIEW_SHA[:32]}",
            preview_sha256=PREVIEW_SHA,
            withheld_count=0,
            withheld_hashes=0,
            reason_codes="",
            actor_kind="user",
            actor_id="00000000-0000-0000-0000-00000000000a",
        ),
        at,
    )


def _sent(log: MemoryEvidence, sha: str, at: datetime) -> None:
    log.write(
        "RITM0042",
        entries.ExportDelivered(
            event_id=f"delivered-1-1-{at.isoformat()}",
            container="dsr-ritm0042-0000-pkg",
            channel="package-link",
            permissions="read",
            expires_at=(at + timedelta(minutes=15)).isoformat(),
            manifest_sha256="12" * 32,
            package_sha256=sha,
            part=PART,
            part_count=1,
        ),
        at,
    )


def _records(log: MemoryEvidence) -> list[EvidenceRecord]:
    return log.records["RITM0042"]


def _package(log: MemoryEvidence, *, review_required: bool) -> PackageState:
    """The package the status shows now (there must be one)."""
    found = lifecycle.package_state(_records(log), review_required=review_required)
    assert found is not None
    return found


def test_no_package_before_one_is_built():
    log = MemoryEvidence()
    _completed(log)
    assert lifecycle.package_state(_records(log), review_required=False) is None


def test_the_package_goes_built_then_sent_with_review_off():
    log = MemoryEvidence()
    _completed(log)
    _packaged(log, PACKAGE_SHA, _at(2))
    built = _package(log, review_required=False)
    assert built.to_dict() == {
        "state": "built",
        "packageSha256": PACKAGE_SHA,
        "parts": 2,
        "packagedAt": _at(2).isoformat(),
        "review": "off",
    }
    _sent(log, PACKAGE_SHA, _at(3))
    sent = _package(log, review_required=False)
    assert (sent.state, sent.review) == (PackageStage.SENT, ReviewState.OFF)


def test_under_review_the_package_waits_then_is_approved_and_the_rebuild_is_shown():
    log = MemoryEvidence()
    _completed(log)
    _packaged(log, PREVIEW_SHA, _at(2))
    waiting = _package(log, review_required=True)
    assert (waiting.state, waiting.review) == (PackageStage.BUILT, ReviewState.PENDING)
    _reviewed(log, _at(3))
    _packaged(log, PACKAGE_SHA, _at(4), parts=1)  # rebuilt without the withheld files
    approved = _package(log, review_required=True)
    assert (approved.state, approved.review) == (PackageStage.APPROVED, ReviewState.APPROVED)
    assert (approved.package_sha256, approved.parts) == (PACKAGE_SHA, 1)
    _sent(log, PREVIEW_SHA, _at(5))  # a link to another package does not count
    assert lifecycle.package_state(_records(log), review_required=True) == approved
    _sent(log, PACKAGE_SHA, _at(6))
    assert _package(log, review_required=True).state is PackageStage.SENT


def test_the_package_goes_with_the_data_and_with_a_new_export():
    log = MemoryEvidence()
    _completed(log)
    _packaged(log, PACKAGE_SHA, _at(2))
    log.write(
        "RITM0042",
        entries.deletion(
            Kind.ERASED,
            event_id="rcpt_1",
            receipt_id="rcpt_1",
            container="dsr-ritm0042-0000",
            container_count=1,
            blob_count=2,
            total_bytes=10,
            manifest_sha256=None,
            reason_sha256=None,
            retention_days=None,
            ended_at=None,
            actor_kind="user",
            actor_id="00000000-0000-0000-0000-00000000000a",
        ),
        _at(3),
    )
    assert lifecycle.package_state(_records(log), review_required=False) is None


@pytest.fixture
def dsr(user_function, evidence_log: MemoryEvidence):
    """GET /api/exports/RITM0042 of a completed DSR, with the evidence given."""
    client = FakeDurableClient()
    client.add(
        "RITM0042",
        runtime="Completed",
        output={
            "phase": "completed",
            "completedAt": _at(1).isoformat(),
            "container": "dsr-ritm0042-0000",
            "deadline": (T0 + timedelta(days=30)).isoformat(),
        },
    )

    def get(**settings: str) -> Any:
        with intake_settings(**settings):
            answer = call(
                user_function("get_dsr"),
                client,
                req=request("GET", "exports/RITM0042", route_params={"requestId": "RITM0042"}),
            )
        assert answer.status_code == 200, body(answer)
        return body(answer)

    return get


def test_the_status_shows_the_subjects_package_and_never_a_file_name(dsr, evidence_log):
    _completed(evidence_log)
    assert "package" not in dsr()
    _packaged(evidence_log, PREVIEW_SHA, _at(2))
    shown = dsr(PACKAGE_REVIEW="required")
    assert shown["package"] == {
        "state": "built",
        "packageSha256": PREVIEW_SHA,
        "parts": 2,
        "packagedAt": _at(2).isoformat(),
        "review": "pending",
    }
    _reviewed(evidence_log, _at(3))
    _packaged(evidence_log, PACKAGE_SHA, _at(4), parts=1)
    _sent(evidence_log, PACKAGE_SHA, _at(5))
    shown = dsr(PACKAGE_REVIEW="required")
    assert (shown["package"]["state"], shown["package"]["review"]) == ("sent", "approved")
    assert shown["data"]["deliveries"] == 1
    assert PART not in json.dumps(shown)


def test_the_status_of_a_purged_dsr_shows_its_package(user_function, evidence_log):
    _completed(evidence_log)
    _packaged(evidence_log, PACKAGE_SHA, _at(2))
    evidence_log.write(
        "RITM0042",
        entries.HistoryPurged(
            event_id="history-purged",
            retention_days=90,
            evidence=True,
            actor_kind="system",
            actor_id="retention",
        ),
        _at(90 * 24 * 60),
    )
    with intake_settings(PACKAGE_REVIEW="off"):
        answer = call(
            user_function("get_dsr"),
            FakeDurableClient(),
            req=request("GET", "exports/RITM0042", route_params={"requestId": "RITM0042"}),
        )
    shown = body(answer)
    assert (shown["historyPurged"], shown["source"]) == (True, "evidence")
    assert shown["package"]["state"] == "built"
    assert shown["package"]["packageSha256"] == PACKAGE_SHA
