"""Review before release and the package's download links, against the fake task hub: a
preview is listed from its manifest, files are withheld by hash with a reason code, approval
writes the evidence and rebuilds without them; no link goes out before; two reviewers at once:
one wins; each part gets a read-only link and an ``export_delivered`` record."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from dsr_export.adapters.package_builder import PackageResult
from dsr_export.adapters.package_review import ReviewConflict
from dsr_export.domain.evidence import Kind
from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR, package_instance_id
from dsr_export.domain.review import Review
from tests.unit.intake_fakes import (
    T0,
    MemoryEvidence,
    body,
    call,
    intake_settings,
    request,
)
from tests.unit.test_package_route import RESULT, Client, FakeBuilder

A, B, C = "a" * 64, "b" * 64, "c" * 64
MANIFEST = {
    "files": [
        {
            "path": "data/Exchange/mail.json",
            "size": 10,
            "sha256": A,
            "role": "data",
            "product": "Exchange",
            "mediaType": "application/json",
        },
        {
            "path": "data/Exchange/copy.json",
            "size": 10,
            "sha256": A,
            "role": "data",
            "product": "Exchange",
            "mediaType": "application/json",
        },
        {
            "path": "data/Teams/chat.json",
            "size": 5,
            "sha256": B,
            "role": "data",
            "product": "Teams",
            "mediaType": "application/json",
        },
        {
            "path": "index.html",
            "size": 5,
            "sha256": C,
            "role": "index",
            "product": None,
            "mediaType": "text/html",
        },
    ]
}


class MemoryReviews:
    """The review store in memory, with the ETag semantics of the blob it is in storage."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.version = 0
        self.manifest: dict[str, Any] | None = MANIFEST

    def read(self, request_id: str) -> tuple[Review | None, str | None]:
        if self.doc is None:
            return None, None
        return Review.from_dict(self.doc), f'"{self.version}"'

    def preview_manifest(self, request_id: str) -> dict[str, Any] | None:
        return self.manifest

    def write(self, request_id: str, review: Review, etag: str | None) -> str:
        current = None if self.doc is None else f'"{self.version}"'
        if etag != current:
            raise ReviewConflict("raced")
        self.doc = json.loads(json.dumps(review.to_dict()))
        self.version += 1
        return f'"{self.version}"'


class FakeStorage:
    def __init__(self) -> None:
        self.minted: list[tuple[str, str, str]] = []

    def blob_download_link(
        self, name: str, blob: str, now: datetime, lifetime: timedelta, disposition: str
    ) -> tuple[str, datetime]:
        self.minted.append((name, blob, disposition))
        return f"https://acct.blob.core.windows.net/{name}/{blob}?sp=r&sig=x", now + lifetime

    def has_data(self, name: str) -> bool:
        return True

    def download_link(self, name: str, now: datetime, lifetime: timedelta):
        return f"https://acct.blob.core.windows.net/{name}?sp=rl&sig=x", now + lifetime


@pytest.fixture
def parts(swap: Callable[..., None]) -> tuple[FakeBuilder, MemoryReviews, FakeStorage]:
    builder, reviews, storage = FakeBuilder(), MemoryReviews(), FakeStorage()
    swap(package_builder=builder, package_reviews=reviews, export_storage=storage, clock=lambda: T0)
    return builder, reviews, storage


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    with intake_settings(PACKAGE_REVIEW="required"):
        yield


def _client() -> Client:
    client = Client()
    client.add(
        "R-1",
        runtime="Completed",
        output={
            "phase": "completed",
            "requestId": "R-1",
            "container": "dsr-r-1-abc",
            "completedAt": T0.isoformat(),
        },
    )
    client.add(
        package_instance_id("R-1"),
        runtime="Completed",
        output={"state": "complete"},
        input_={
            "build": {"requestId": "R-1", "container": "dsr-r-1-abc", "language": "en"},
            "actor": {"kind": "key", "id": "k"},
        },
    )
    return client


def _review(user_function, client, payload: Any = None, headers: dict[str, str] | None = None):
    method = "GET" if payload is None else "POST"
    req = request(
        method,
        "exports/R-1/package/review",
        payload,
        route_params={"requestId": "R-1"},
        headers=headers,
    )
    return call(user_function("review_package"), client, req=req)


def _record_built(evidence_log: MemoryEvidence, built: PackageResult) -> None:
    """What the package build's last step writes: its ``packaged`` record."""
    evidence_log.append(
        "R-1",
        Kind.PACKAGED,
        T0,
        {"container": built.container, "packageSha256": built.package_sha256},
    )


def _download(user_function, client):
    req = request("POST", "exports/R-1/download", None, route_params={"requestId": "R-1"})
    return call(user_function("download_export"), client, req=req)


def test_the_preview_lists_its_data_files_from_the_manifest(user_function, parts):
    builder, _, _ = parts
    builder.built = RESULT
    shown = _review(user_function, _client())
    assert shown.status_code == 200
    doc = body(shown)
    assert doc["state"] == "open"
    assert [f["path"] for f in doc["files"]] == [
        "data/Exchange/mail.json",
        "data/Exchange/copy.json",
        "data/Teams/chat.json",
    ]
    assert doc["files"][2] == {
        "path": "data/Teams/chat.json",
        "size": 5,
        "sha256": B,
        "product": "Teams",
        "mediaType": "application/json",
    }
    assert shown.headers["ETag"]


def test_no_link_goes_out_before_approval_nor_the_container_link(user_function, parts):
    builder, _, storage = parts
    client = _client()
    refused = _download(user_function, client)
    assert refused.status_code == 409
    assert "review" in body(refused)["detail"]
    builder.built = RESULT
    assert _download(user_function, client).status_code == 409
    assert storage.minted == []


def test_withholding_then_approving_records_hashes_and_rebuilds(
    user_function, parts, evidence_log: MemoryEvidence
):
    builder, _, storage = parts
    builder.built = RESULT
    client = _client()
    ask = {"withhold": [{"sha256": A, "reasonCode": "OTHERS_RIGHTS"}], "approve": True}
    decided = _review(user_function, client, ask)
    assert decided.status_code == 202
    doc = body(decided)
    assert (doc["state"], doc["withheldCount"]) == ("rebuilding", 2)
    [(name, instance, payload)] = client.started
    assert (name, instance) == (PACKAGE_ORCHESTRATOR, package_instance_id("R-1"))
    assert payload["build"]["withheld"] == [{"sha256": A, "reasonCode": "OTHERS_RIGHTS"}]
    kinds = [r.kind for r in evidence_log.records["R-1"]]
    assert kinds == [Kind.PACKAGE_FILE_WITHHELD, Kind.PACKAGE_REVIEWED]
    text = json.dumps([dict(r.data) for r in evidence_log.records["R-1"]])
    assert "mail.json" not in text, "never a file name in the evidence"
    withheld = evidence_log.records["R-1"][0].data
    assert (withheld["sha256"], withheld["reasonCode"], withheld["fileCount"]) == (
        A,
        "OTHERS_RIGHTS",
        2,
    )
    # Still building the final package: no link yet.
    assert _download(user_function, client).status_code == 409
    # The same decision again is the same answer, and nothing is recorded twice.
    client.add(package_instance_id("R-1"), runtime="Running")
    assert _review(user_function, client, ask).status_code == 202
    assert len(evidence_log.records["R-1"]) == 2
    # Built: the links go out.
    builder.built = PackageResult(
        **{**RESULT.__dict__, "withheld": ({"sha256": A, "reasonCode": "OTHERS_RIGHTS"},)}
    )
    _record_built(evidence_log, builder.built)
    answer = _download(user_function, client)
    assert answer.status_code == 201
    assert body(answer)["permissions"] == ["read"]
    assert storage.minted[0][1] == "package.zip"
    assert 'filename="R-1-package.zip"' in storage.minted[0][2]
    delivered = evidence_log.records["R-1"][-1]
    assert delivered.kind is Kind.EXPORT_DELIVERED
    assert (delivered.data["packageSha256"], delivered.data["part"]) == (A, "package.zip")
    # Approved: the review is closed to changes.
    changed = _review(user_function, client, {"withhold": [], "approve": True})
    assert changed.status_code == 409


def test_bad_input_names_the_field(user_function, parts):
    builder, _, _ = parts
    builder.built = RESULT
    client = _client()
    ask = {"withhold": [{"sha256": "f" * 64, "reasonCode": "BECAUSE"}, "x"], "approve": "yes"}
    answer = _review(user_function, client, ask)
    assert answer.status_code == 400
    pointers = [e["pointer"] for e in body(answer)["errors"]]
    assert pointers == ["/approve", "/withhold/0/sha256", "/withhold/0/reasonCode", "/withhold/1"]


def test_two_reviewers_at_once_one_wins_the_other_gets_409(user_function, parts):
    builder, reviews, _ = parts
    builder.built = RESULT
    client = _client()
    etag = _review(user_function, client).headers["ETag"]
    first = _review(
        user_function,
        client,
        {"withhold": [{"sha256": B, "reasonCode": "LEGAL_PRIVILEGE"}]},
        {"If-Match": etag},
    )
    assert first.status_code == 200
    second = _review(user_function, client, {"withhold": [], "approve": True}, {"If-Match": etag})
    assert second.status_code == 409
    assert Review.from_dict(reviews.doc or {}).approved is False


def test_without_review_a_built_package_is_delivered_one_link_per_part(
    user_function, parts, evidence_log: MemoryEvidence
):
    builder = parts[0]
    split = PackageResult(
        **{
            **RESULT.__dict__,
            "parts": (
                {"name": "package.part-001.zip", "size": 5, "sha256": B},
                {"name": "package.part-002.zip", "size": 5, "sha256": C},
            ),
        }
    )
    builder.built = split
    _record_built(evidence_log, split)
    with intake_settings(PACKAGE_REVIEW="off"):
        answer = _download(user_function, _client())
    assert answer.status_code == 201
    doc = body(answer)
    assert [link["part"] for link in doc["links"]] == [
        "package.part-001.zip",
        "package.part-002.zip",
    ]
    assert "url" not in doc, "one url per part, none alone"
    records = [r for r in evidence_log.records["R-1"] if r.kind is Kind.EXPORT_DELIVERED]
    assert [r.data["part"] for r in records] == ["package.part-001.zip", "package.part-002.zip"]
    assert {r.data["packageSha256"] for r in records} == {A}
    assert all("sig=" not in json.dumps(dict(r.data)) for r in records)


def test_a_package_written_but_not_recorded_gets_no_link(
    user_function, parts, evidence_log: MemoryEvidence
):
    """A build that wrote the package and could not record it (the evidence account down)
    leaves a package the chain does not know: no link goes out until asking for the package
    again records it."""
    builder, _, storage = parts
    builder.built = RESULT
    with intake_settings(PACKAGE_REVIEW="off"):
        refused = _download(user_function, _client())
        assert refused.status_code == 409
        assert "POST .../package" in body(refused)["detail"]
        assert storage.minted == []
        _record_built(evidence_log, RESULT)
        assert _download(user_function, _client()).status_code == 201
    assert len(storage.minted) == 1
