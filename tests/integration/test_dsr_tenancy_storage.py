"""Two tenants' DSRs in real storage (Azurite), the same request id in both: two evidence
chains, each under its tenant's prefix; two sets of containers, and erasing one tenant's DSR
touches nothing of the other's (issue 21, TENANCY=multi)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from dsr_export import composition
from dsr_export.adapters.evidence_log import EvidenceLog
from dsr_export.adapters.storage import ExportStorage
from dsr_export.domain import dsr_keys
from dsr_export.domain.evidence import Kind
from dsr_export.domain.request import container_name
from dsr_export.domain.tenants import Tenant
from dsr_export.settings import ExportStorageSettings, SasMode
from tests.unit.intake_fakes import app_settings
from tests.unit.test_dsr_tenancy import MemoryRegistry

pytestmark = pytest.mark.azurite

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
T0 = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


@pytest.fixture
def service(azurite: Azurite, tls_files, monkeypatch: pytest.MonkeyPatch) -> BlobServiceClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    return BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )


@pytest.fixture
def two_tenants(swap) -> Iterator[None]:
    registry = MemoryRegistry(
        Tenant(A, "Contoso", evidence_prefix="t-contoso"),
        Tenant(B, "Fabrikam", evidence_prefix="t-fabrikam"),
    )
    swap(tenant_registry=registry)
    with app_settings(
        TENANCY="multi", MULTI_TENANT_CLIENT_ID="00000000-0000-4000-8000-0000000000ac"
    ):
        composition.reset()
        yield
    composition.reset()


def test_each_tenants_evidence_chain_lies_under_its_prefix(service, two_tenants) -> None:
    container = service.get_container_client(f"dsr-evidence-{uuid.uuid4().hex[:12]}")
    log = EvidenceLog(container, prefix_of=composition.evidence_prefix)
    ticket = f"RITM{uuid.uuid4().hex[:7].upper()}"
    of_a, of_b = dsr_keys.dsr_id(A, ticket), dsr_keys.dsr_id(B, ticket)
    log.append(of_a, Kind.RECEIVED, T0, {"source": "http", "regulation": "gdpr"})
    log.append(of_b, Kind.RECEIVED, T0, {"source": "queue", "regulation": "ccpa"})
    log.append(of_a, Kind.SAS_REVOKED, T0 + timedelta(minutes=1), {})
    names = sorted(blob.name for blob in container.list_blobs())
    assert names == [
        f"t-contoso/{dsr_keys.tenant_key(A)}~{ticket}.jsonl",
        f"t-fabrikam/{dsr_keys.tenant_key(B)}~{ticket}.jsonl",
    ]
    assert len(log.read(of_a)) == 2
    assert len(log.read(of_b)) == 1
    assert log.verify(of_a).ok
    assert log.verify(of_b).ok
    with pytest.raises(LookupError):  # no registered tenant: no chain at the root either
        log.append(dsr_keys.dsr_id(str(uuid.uuid4()), ticket), Kind.RECEIVED, T0, {})


def test_the_same_request_id_in_two_tenants_has_two_containers(service, azurite) -> None:
    storage = ExportStorage(
        ExportStorageSettings(
            blob_endpoint=azurite.blob_endpoint,
            sas_mode=SasMode.STORED_POLICY,
            sas_lifetime=timedelta(days=60),
            account_key=ACCOUNT_KEY,
        ),
        credential=None,  # type: ignore[arg-type]  # stored-policy mode signs with the key
    )
    ticket = f"RITM{uuid.uuid4().hex[:7].upper()}"
    of_a, of_b = dsr_keys.dsr_id(A, ticket), dsr_keys.dsr_id(B, ticket)
    names = {}
    for dsr in (of_a, of_b):
        name, now = container_name(dsr), datetime.now(UTC)
        storage.prepare(name, now)
        url, _ = storage.mint_graph_sas(name, now)
        ContainerClient.from_container_url(url).upload_blob("Exchange/mail.json", dsr.encode())
        storage.write_manifest(name, dsr, now)
        names[dsr] = name
    assert names[of_a] != names[of_b]
    assert storage.containers_of(of_a) == [names[of_a]]
    deleted = storage.delete_data(of_a)
    assert deleted.containers == (names[of_a],)
    assert storage.container(names[of_b]).exists(), "erasing in A touches nothing of B"
    assert storage.containers_of(of_b) == [names[of_b]]
