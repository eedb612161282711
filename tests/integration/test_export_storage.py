"""The SAS handed to Graph, proven against Azurite over HTTPS (it enforces ``spr=https``).

In both modes the SAS can do what Graph does (create and append RequestInfo.json, write blobs)
and nothing else: no read, list or delete, no other container; dead after expiry; a
stored-policy SAS is dead after revocation.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from devhost.azurite import ACCOUNT_KEY, Azurite
from dsr_export.adapters import sas
from dsr_export.adapters.package_review import ReviewConflict, ReviewStore
from dsr_export.adapters.storage import (
    DOWNLOAD_SKEW,
    LEGACY_AUDIT_BLOB,
    MANIFEST_BLOB,
    REQUEST_INFO_BLOB,
    ExportStorage,
)
from dsr_export.domain.delivery import attachment, download_name
from dsr_export.domain.package_manifest import delivery_container
from dsr_export.domain.review import Review
from dsr_export.settings import ExportStorageSettings, SasMode

pytestmark = pytest.mark.azurite


@pytest.fixture
def trust_azurite(tls_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)


@pytest.fixture(params=[SasMode.STORED_POLICY, SasMode.USER_DELEGATION], ids=lambda m: m.value)
def storage(request, azurite: Azurite, identity_env, trust_azurite) -> ExportStorage:
    mode: SasMode = request.param
    settings = ExportStorageSettings(
        blob_endpoint=azurite.blob_endpoint,
        sas_mode=mode,
        sas_lifetime=timedelta(days=60 if mode is SasMode.STORED_POLICY else 7),
        account_key=ACCOUNT_KEY if mode is SasMode.STORED_POLICY else None,
    )
    return ExportStorage(settings, ManagedIdentityCredential())


def _name() -> str:
    return f"dsr-test-{uuid.uuid4().hex[:12]}"


def _denied(action: Callable[[], object]) -> int:
    with pytest.raises(HttpResponseError) as caught:
        action()
    assert caught.value.status_code in (403, 404, 409), caught.value.status_code
    return int(caught.value.status_code or 0)


def _graph_side(sas_url: str) -> ContainerClient:
    """What Graph holds: the SAS URL and nothing else."""
    return ContainerClient.from_container_url(sas_url)


def test_sas_does_what_graph_needs_and_nothing_more(storage: ExportStorage):
    name, now = _name(), datetime.now(UTC)
    assert storage.prepare(name, now) is False
    url, expires_at = storage.mint_graph_sas(name, now)
    query = parse_qs(urlsplit(url).query)
    assert query["spr"] == ["https"]
    assert "ss" not in query, "a service SAS, never an account SAS"
    assert query["sr"] == ["c"]
    assert "sp" not in query or query["sp"] == ["acw"]
    assert expires_at > now + timedelta(days=6)

    graph = _graph_side(url)
    info = graph.get_blob_client(REQUEST_INFO_BLOB)
    info.create_append_blob()
    info.append_block(b'{"requestGuid": "x"}')
    graph.upload_blob("Exchange/mailbox.json", b"{}")
    assert storage.request_info_exists(name) is True

    _denied(lambda: list(graph.list_blobs()))
    _denied(lambda: info.download_blob().readall())
    _denied(lambda: graph.delete_blob("Exchange/mailbox.json"))
    other = _name()
    storage.prepare(other, now)
    other_url = url.replace(f"/{name}?", f"/{other}?")
    _denied(lambda: _graph_side(other_url).upload_blob("x.json", b"{}"))


def test_request_info_reveals_an_earlier_submit(storage: ExportStorage):
    name, now = _name(), datetime.now(UTC)
    storage.prepare(name, now)
    url, _ = storage.mint_graph_sas(name, now)
    _graph_side(url).get_blob_client(REQUEST_INFO_BLOB).create_append_blob()
    assert storage.prepare(name, now) is True, "prepare is idempotent and notices it"


def test_manifest_lists_what_was_written(storage: ExportStorage):
    name, now = _name(), datetime.now(UTC)
    storage.prepare(name, now)
    url, _ = storage.mint_graph_sas(name, now)
    graph = _graph_side(url)
    files = {"RequestInfo.json": b"{}", "Exchange/a.json": b"12345", "Teams/Chats/b.json": b"1"}
    for blob, data in files.items():
        graph.upload_blob(
            blob, data, content_settings=ContentSettings(content_type="application/json")
        )
    summary = storage.write_manifest(name, "RITM1", now)
    assert summary.blob_count == 3
    assert summary.total_bytes == 8
    assert summary.products == {"(root)": 1, "Exchange": 1, "Teams": 1}
    document = json.loads(storage.container(name).download_blob(MANIFEST_BLOB).readall())
    assert {b["name"] for b in document["blobs"]} == set(files)
    assert all(b["md5"] for b in document["blobs"]), "Azurite computes MD5 for single-shot uploads"
    stored = storage.container(name).download_blob(MANIFEST_BLOB).readall()
    assert summary.sha256 == hashlib.sha256(stored).hexdigest()
    # An older version's audit record is not Graph's data; a second finalisation keeps the
    # manifest as it is, so the hash the evidence recorded stays true.
    storage.container(name).upload_blob(LEGACY_AUDIT_BLOB, b"{}")
    again = storage.write_manifest(name, "RITM1", now + timedelta(minutes=5))
    assert again.blob_count == 3, "the manifest lists neither itself nor the audit record"
    assert again.sha256 == summary.sha256
    assert storage.container(name).download_blob(MANIFEST_BLOB).readall() == stored


def _export_with_data(storage: ExportStorage, request_id: str, attempt: int = 1) -> str:
    from dsr_export.domain.request import container_name

    name, now = container_name(request_id, attempt), datetime.now(UTC)
    storage.prepare(name, now)
    url, _ = storage.mint_graph_sas(name, now)
    _graph_side(url).upload_blob("Exchange/mail.json", b"0123456789")
    storage.write_manifest(name, request_id, now)
    return name


def test_a_delivery_link_reads_and_lists_one_container_and_nothing_else(storage: ExportStorage):
    request_id = f"DELIVER-{uuid.uuid4().hex[:8].upper()}"
    name = _export_with_data(storage, request_id)
    other = _export_with_data(storage, f"OTHER-{uuid.uuid4().hex[:8].upper()}")
    url, expiry = storage.download_link(name, datetime.now(UTC), timedelta(minutes=60))
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["rl"]
    assert query["spr"] == ["https"]
    assert "skoid" in query, "signed with a user delegation key, not the account key"
    assert "si" not in query
    assert expiry - datetime.now(UTC) <= timedelta(minutes=60)
    link = ContainerClient.from_container_url(url)
    assert {b.name for b in link.list_blobs()} == {"Exchange/mail.json", MANIFEST_BLOB}
    assert link.download_blob("Exchange/mail.json").readall() == b"0123456789"
    _denied(lambda: link.upload_blob("planted.json", b"{}"))
    _denied(lambda: link.delete_blob("Exchange/mail.json"))
    elsewhere = ContainerClient.from_container_url(url.replace(name, other))
    _denied(lambda: list(elsewhere.list_blobs()))


def test_a_delivery_link_is_dead_after_its_expiry(storage: ExportStorage):
    name = _export_with_data(storage, f"EXPIRED-{uuid.uuid4().hex[:8].upper()}")
    # Minted two hours ago for one hour: expired an hour ago (no waiting in the test).
    minted = datetime.now(UTC) - timedelta(hours=2)
    assert timedelta(hours=1) > DOWNLOAD_SKEW
    url, expiry = storage.download_link(name, minted, timedelta(hours=1))
    assert expiry < datetime.now(UTC)
    link = ContainerClient.from_container_url(url)
    _denied(lambda: list(link.list_blobs()))
    _denied(lambda: link.download_blob(MANIFEST_BLOB).readall())


def test_deleting_a_dsrs_data_removes_every_attempt_and_counts_it(storage: ExportStorage):
    request_id = f"ERASE-{uuid.uuid4().hex[:8].upper()}"
    first = _export_with_data(storage, request_id)
    second = _export_with_data(storage, request_id, attempt=2)
    neighbour = _export_with_data(storage, f"{request_id}X")
    assert storage.containers_of(request_id) == sorted([first, second])
    deleted = storage.delete_data(request_id)
    assert deleted.containers == tuple(sorted([first, second]))
    assert deleted.blob_count == 2
    assert deleted.total_bytes == 20
    assert deleted.manifest_sha256 is not None
    assert not storage.container(first).exists()
    assert not storage.container(second).exists()
    assert storage.container(neighbour).exists(), "another DSR's data is not touched"
    assert storage.delete_data(request_id).containers == (), "a second deletion deletes nothing"


def test_deleting_a_dsrs_data_spares_a_dsr_whose_id_extends_its_container_name(
    storage: ExportStorage,
):
    """F-2: ``V-<first 16 hex of sha256(V)>-A...`` slugs into ``<V's container>-a...``; an
    erasure of ``V`` (or the retention run) must not delete or count that DSR's container."""
    victim = f"V{uuid.uuid4().hex[:6].upper()}"
    digest = hashlib.sha256(victim.encode()).hexdigest()[:16]
    mine = _export_with_data(storage, victim)
    tails = ("A2", "A", "PKG")
    hostile = [_export_with_data(storage, f"{victim}-{digest}-{tail}") for tail in tails]
    assert all(name.startswith(f"{mine}-") for name in hostile), "the adversarial shape"
    assert storage.containers_of(victim) == [mine]
    deleted = storage.delete_data(victim)
    assert deleted.containers == (mine,)
    assert deleted.blob_count == 1
    assert all(storage.container(name).exists() for name in hostile)


def test_a_delivery_link_is_refused_once_the_data_is_gone(storage: ExportStorage):
    request_id = f"GONE-{uuid.uuid4().hex[:8].upper()}"
    name = _export_with_data(storage, request_id)
    assert storage.has_data(name)
    storage.delete_data(request_id)
    assert not storage.has_data(name)


def test_stored_policy_sas_dies_on_revocation(storage: ExportStorage):
    name, now = _name(), datetime.now(UTC)
    storage.prepare(name, now)
    url, _ = storage.mint_graph_sas(name, now)
    _graph_side(url).upload_blob("before.json", b"{}")
    revoked = storage.revoke(name)
    if storage._settings.sas_mode is SasMode.STORED_POLICY:
        assert revoked is True
        _denied(lambda: _graph_side(url).upload_blob("after.json", b"{}"))
    else:
        assert revoked is False, "a user delegation SAS can only expire"


def test_sas_is_dead_after_expiry(storage: ExportStorage, azurite: Azurite):
    name, now = _name(), datetime.now(UTC)
    if storage._settings.sas_mode is SasMode.STORED_POLICY:
        # The policy holds the expiry: set it as if prepared 61 days ago.
        storage.prepare(name, now - timedelta(days=61))
        url, _ = storage.mint_graph_sas(name, now)
    else:
        storage.prepare(name, now)
        container = storage.container(name)
        key = storage._service.get_user_delegation_key(
            now - timedelta(minutes=15), now + timedelta(hours=1)
        )
        window = sas.Validity(start=now - timedelta(hours=1), expiry=now - timedelta(minutes=1))
        url = sas.user_delegation_sas(container, key, window)
    _denied(lambda: _graph_side(url).upload_blob("late.json", b"{}"))


def test_user_delegation_lifetime_is_capped_at_seven_days():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    window = sas.validity(now, timedelta(days=60), user_delegation=True)
    assert window.expiry == now + timedelta(days=7)
    assert window.start == now - timedelta(minutes=15)
    stored = sas.validity(now, timedelta(days=60), user_delegation=False)
    assert stored.expiry == now + timedelta(days=60)


def test_sas_cannot_read_a_blob_back_even_through_a_blob_client(storage: ExportStorage):
    name, now = _name(), datetime.now(UTC)
    storage.prepare(name, now)
    url, _ = storage.mint_graph_sas(name, now)
    base, token = url.split("?", 1)
    blob = BlobClient.from_blob_url(f"{base}/{REQUEST_INFO_BLOB}?{token}")
    blob.create_append_blob()
    _denied(lambda: blob.get_blob_properties())


def test_a_package_link_reads_its_one_blob_names_the_file_and_cannot_list(
    storage: ExportStorage,
):
    """The subject's link: read of one blob (sp=r, sr=b), HTTPS, the file name set by rscd."""
    name = _export_with_data(storage, f"PKG-{uuid.uuid4().hex[:8].upper()}")
    disposition = attachment(download_name("RITM-Ä1", "package.zip"))
    url, expiry = storage.blob_download_link(
        name, "Exchange/mail.json", datetime.now(UTC), timedelta(minutes=30), disposition
    )
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["r"]
    assert query["sr"] == ["b"]
    assert query["spr"] == ["https"]
    assert "skoid" in query, "signed with a user delegation key, not the account key"
    assert expiry - datetime.now(UTC) <= timedelta(minutes=30)
    blob = BlobClient.from_blob_url(url)
    downloaded = blob.download_blob()
    assert downloaded.readall() == b"0123456789"
    assert downloaded.properties.content_settings.content_disposition == disposition
    assert disposition == (
        "attachment; filename=\"RITM-A1-package.zip\"; filename*=UTF-8''RITM-%C3%841-package.zip"
    )
    container_url = url.replace("/Exchange/mail.json", "")
    _denied(lambda: list(ContainerClient.from_container_url(container_url).list_blobs()))
    other = BlobClient.from_blob_url(url.replace("Exchange/mail.json", MANIFEST_BLOB))
    _denied(lambda: other.download_blob().readall())
    _denied(lambda: blob.upload_blob(b"{}", overwrite=True))
    _denied(lambda: blob.delete_blob())


def test_two_reviewers_writing_at_once_one_wins(storage: ExportStorage):
    """The review is written on its ETag: the second of two writers from one read loses."""
    request_id = f"REVIEW-{uuid.uuid4().hex[:8].upper()}"
    storage.service.create_container(delivery_container(request_id))
    store = ReviewStore(storage.service)
    manifest = {"files": [{"path": "data/a.json", "size": 1, "sha256": "a" * 64, "role": "data"}]}
    first = Review.of_manifest(manifest, "b" * 64)
    etag = store.write(request_id, first, None)
    with pytest.raises(ReviewConflict):
        store.write(request_id, first, None)
    store.write(request_id, Review(first.preview_sha256, first.files, approved=True), etag)
    with pytest.raises(ReviewConflict):
        store.write(request_id, first, etag)
    stored, _ = store.read(request_id)
    assert stored is not None
    assert stored.approved
