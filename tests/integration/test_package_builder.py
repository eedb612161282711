"""The package builder against Azurite: streamed from the export container into one zip in a
delivery container, every member in the manifest, idempotent, rebuilt after a crash, split
above the part size, and refused when the export changed after it completed."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from dsr_export.adapters.package_builder import (
    ExportChanged,
    NoExportManifest,
    PackageBuilder,
    PackageJob,
    PackageOptions,
)
from dsr_export.adapters.package_review import ReviewStore
from dsr_export.adapters.storage import ExportStorage
from dsr_export.domain.organisation import OrganisationProfile
from dsr_export.domain.package_manifest import (
    STATE_BLOB,
    PackageManifest,
    Withheld,
    data_member,
    delivery_container,
)
from dsr_export.domain.request import container_name
from dsr_export.domain.review import Review
from dsr_export.rendering.render import Facts
from dsr_export.settings import ExportStorageSettings, SasMode
from tests.package_fixtures import HOSTILE_NAME, PROFILE, TestSigner, export_files

pytestmark = pytest.mark.azurite

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


@pytest.fixture
def trust_azurite(tls_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)


@pytest.fixture
def service(azurite: Azurite, trust_azurite) -> BlobServiceClient:
    return BlobServiceClient(
        azurite.blob_endpoint, credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}
    )


@pytest.fixture
def storage(azurite: Azurite, trust_azurite) -> ExportStorage:
    from datetime import timedelta

    from azure.identity import ManagedIdentityCredential

    settings = ExportStorageSettings(
        blob_endpoint=azurite.blob_endpoint,
        sas_mode=SasMode.STORED_POLICY,
        sas_lifetime=timedelta(days=60),
        account_key=ACCOUNT_KEY,
    )
    return ExportStorage(settings, ManagedIdentityCredential())


def _completed_export(service: BlobServiceClient, storage: ExportStorage) -> tuple[str, str]:
    request_id = f"PKG-{uuid.uuid4().hex[:8]}"
    name = container_name(request_id)
    container = service.create_container(name)
    for blob, content in export_files().items():
        container.upload_blob(blob, content)
    storage.write_manifest(name, request_id, NOW)
    return request_id, name


def _job(request_id: str, name: str, language: str = "en") -> PackageJob:
    return PackageJob(request_id, name, language, Facts(request_id, NOW, completed_at=NOW))


def _builder(service: BlobServiceClient, signer: TestSigner, **options: Any) -> _Bound:
    builder = PackageBuilder(service, OrganisationProfile.parse(PROFILE), PackageOptions(**options))
    return _Bound(builder, signer)


class _Bound:
    """A builder and the signer its builds are sealed with."""

    def __init__(self, builder: PackageBuilder, signer: TestSigner) -> None:
        self.builder, self.signer = builder, signer

    def build(self, job: PackageJob, **kwargs: Any) -> Any:
        return self.builder.build(job, self.signer, **kwargs)


def _zip(service: BlobServiceClient, request_id: str, part: str) -> zipfile.ZipFile:
    blob = service.get_container_client(delivery_container(request_id)).get_blob_client(part)
    return zipfile.ZipFile(io.BytesIO(blob.download_blob().readall()))


def test_package_holds_every_file_as_written_and_a_manifest_of_every_member(service, storage):
    request_id, name = _completed_export(service, storage)
    signer = TestSigner()
    result = _builder(service, signer).build(
        _job(request_id, name), now=NOW, completed_at="c", evidence_head="h" * 64
    )

    assert [part["name"] for part in result.parts] == ["package.zip"]
    package = _zip(service, request_id, "package.zip")
    raw = (
        service.get_container_client(delivery_container(request_id))
        .get_blob_client("package.zip")
        .download_blob()
        .readall()
    )
    assert hashlib.sha256(raw).hexdigest() == result.package_sha256 == result.parts[0]["sha256"]
    for blob, content in export_files().items():
        assert package.read(data_member(blob)) == content
    manifest_bytes = package.read("manifest.json")
    assert hashlib.sha256(manifest_bytes).hexdigest() == result.manifest_sha256
    manifest = PackageManifest.from_bytes(manifest_bytes)
    members = set(package.namelist()) - {"manifest.json", "receipt.jws"}
    assert {item.path for item in manifest.files} == members
    for item in manifest.files:
        assert hashlib.sha256(package.read(item.path)).hexdigest() == item.sha256
    assert {"index.html", "README.txt"} <= members
    assert signer.signed[0]["manifestSha256"] == result.manifest_sha256
    assert package.read("receipt.jws").count(b".") == 2
    for member in package.namelist():
        assert ".." not in member.split("/")
        assert not member.startswith("/")
    index = package.read("index.html").decode()
    assert "<script>" not in index
    hostile_page = [
        i
        for i in manifest.files
        if i.role == "page" and HOSTILE_NAME in package.read(i.path).decode()
    ]
    assert not hostile_page, "a hostile name is escaped on every page"


def test_a_second_run_answers_the_finished_package(service, storage):
    request_id, name = _completed_export(service, storage)
    signer = TestSigner()
    first = _builder(service, signer).build(
        _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
    )
    second = _builder(service, signer).build(
        _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
    )
    assert second.reused
    assert second.package_sha256 == first.package_sha256
    assert len(signer.signed) == 1


def test_a_crashed_build_is_rebuilt_from_scratch(service, storage):
    request_id, name = _completed_export(service, storage)

    class Crash(RuntimeError):
        pass

    class FailingSigner(TestSigner):
        def sign_receipt(self, claims: Mapping[str, Any]) -> str:
            raise Crash("the key cannot sign")

    with pytest.raises(Crash):
        _builder(service, FailingSigner()).build(
            _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
        )
    delivery = service.get_container_client(delivery_container(request_id))
    assert STATE_BLOB not in [b.name for b in delivery.list_blobs()]
    result = _builder(service, TestSigner()).build(
        _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
    )
    assert not result.reused
    assert sorted(b.name for b in delivery.list_blobs()) == [
        "package-manifest.json",
        "package-state.json",
        "package.zip",
    ]


def test_above_the_part_size_the_package_is_split_in_numbered_parts(service, storage):
    request_id, name = _completed_export(service, storage)
    result = _builder(service, TestSigner(), part_bytes=2000).build(
        _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
    )
    names = [part["name"] for part in result.parts]
    assert len(names) > 1
    assert names[0] == "package.part-001.zip"
    last = _zip(service, request_id, names[-1])
    manifest = PackageManifest.from_bytes(last.read("manifest.json"))
    assert list(manifest.parts) == names
    members: set[str] = set()
    for part in names:
        members |= set(_zip(service, request_id, part).namelist())
    assert {item.path for item in manifest.files} == members - {"manifest.json", "receipt.jws"}


def test_an_export_changed_after_completion_is_not_packaged(service, storage):
    request_id, name = _completed_export(service, storage)
    service.get_container_client(name).upload_blob("Exchange/late.json", b"{}")
    with pytest.raises(ExportChanged) as caught:
        _builder(service, TestSigner()).build(
            _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
        )
    assert (caught.value.added, caught.value.removed, caught.value.altered) == (1, 0, 0)


def test_an_altered_blob_is_found(service, storage):
    request_id, name = _completed_export(service, storage)
    service.get_container_client(name).upload_blob(
        "Teams/notes.txt", b"other text\n", overwrite=True
    )
    with pytest.raises(ExportChanged) as caught:
        _builder(service, TestSigner()).build(
            _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
        )
    assert caught.value.altered == 1


def test_no_manifest_means_no_package(service, storage):
    request_id = f"PKG-{uuid.uuid4().hex[:8]}"
    service.create_container(container_name(request_id))
    with pytest.raises(NoExportManifest):
        _builder(service, TestSigner()).build(
            _job(request_id, container_name(request_id)),
            now=NOW,
            completed_at=None,
            evidence_head=None,
        )


def test_the_package_is_erased_with_the_dsr_data(service, storage):
    request_id, name = _completed_export(service, storage)
    _builder(service, TestSigner()).build(
        _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
    )
    deleted = storage.delete_data(request_id)
    assert delivery_container(request_id) in deleted.containers
    assert deleted.blob_count == len(export_files())
    assert not service.get_container_client(delivery_container(request_id)).exists()


def test_a_large_blob_is_streamed_not_held(service, storage):
    """48 MiB of incompressible data in, the builder's own allocations stay a few blocks'
    worth (tracemalloc's peak): the export is never held whole in memory."""
    import os
    import tracemalloc

    from azure.storage.blob import BlobBlock

    request_id = f"PKG-{uuid.uuid4().hex[:8]}"
    name = container_name(request_id)
    container = service.create_container(name)
    blob = container.get_blob_client("OneDrive/big.bin")
    blocks = []
    for number in range(12):
        block_id = f"{number:06d}".encode().hex()
        blob.stage_block(block_id, os.urandom(4 * 1024 * 1024))
        blocks.append(BlobBlock(block_id=block_id))
    blob.commit_block_list(blocks)
    container.upload_blob("RequestInfo.json", b"{}")
    storage.write_manifest(name, request_id, NOW)

    tracemalloc.start()
    try:
        result = _builder(service, TestSigner()).build(
            _job(request_id, name), now=NOW, completed_at=None, evidence_head=None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.parts[0]["size"] > 48 * 1024 * 1024
    print(f"peak {peak / 2**20:.1f} MiB")
    assert peak < 32 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_the_approved_package_leaves_out_the_withheld_files_and_says_so(service, storage):
    """Preview, review (kept across the rebuild), final package without the withheld file."""
    request_id, name = _completed_export(service, storage)
    signer = TestSigner()
    bound = _builder(service, signer)
    preview = bound.build(_job(request_id, name), now=NOW, completed_at=None, evidence_head=None)
    reviews = ReviewStore(service)
    manifest = reviews.preview_manifest(request_id)
    assert manifest is not None
    review = Review.of_manifest(manifest, preview.package_sha256)
    target = review.files[0]
    withheld = (Withheld(target.sha256, "OTHERS_RIGHTS"),)
    decided = Review(review.preview_sha256, review.files, withheld, approved=True)
    reviews.write(request_id, decided, None)
    job = replace(_job(request_id, name), withheld=withheld, skip=decided.skipped_members())
    final = bound.build(job, now=NOW, completed_at=None, evidence_head=None)
    assert final.package_sha256 != preview.package_sha256
    assert final.withheld == ({"sha256": target.sha256, "reasonCode": "OTHERS_RIGHTS"},)
    package = _zip(service, request_id, "package.zip")
    assert target.path not in package.namelist()
    final_manifest = PackageManifest.from_bytes(package.read("manifest.json"))
    assert [w.to_dict() for w in final_manifest.withheld] == [final.withheld[0]]
    assert target.sha256 not in {f.sha256 for f in final_manifest.files if f.role == "data"}
    count = decided.withheld_count()
    said = f"{count} file was withheld." if count == 1 else f"{count} files were withheld."
    assert said in package.read("README.txt").decode()
    assert "OTHERS_RIGHTS" in package.read("index.html").decode()
    assert reviews.read(request_id)[0] == decided, "the review survives the rebuild"
    again = bound.build(job, now=NOW, completed_at=None, evidence_head=None)
    assert again.reused
