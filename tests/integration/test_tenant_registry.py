"""The tenant registry against Azurite: a blob per tenant written conditionally on its ETag,
and every change in the hash-chained change log; a change the log refuses does not stand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from dsr_export.adapters.tenant_registry import (
    REGISTRY_CONTAINER,
    ChangeLog,
    ChangeLogError,
    TenantRegistry,
)
from dsr_export.domain import tenants
from dsr_export.domain.tenants import TenantExists, TenantUnknown, VersionMismatch

pytestmark = pytest.mark.azurite

A = "00000000-0000-4000-8000-0000000000c1"
B = "00000000-0000-4000-8000-0000000000c2"
ADMIN = {"kind": "user", "id": "00000000-0000-4000-8000-00000000aaaa"}
AT = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


@pytest.fixture
def service(azurite: Azurite, tls_files, monkeypatch: pytest.MonkeyPatch) -> BlobServiceClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    return BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )


@pytest.fixture
def registry(service: BlobServiceClient) -> TenantRegistry:
    """A registry of its own per test (fresh containers), as the composition root builds it."""
    suffix = uuid.uuid4().hex[:8]
    changes = ChangeLog(service.get_container_client(f"evidence-{suffix}"))
    return TenantRegistry(service.get_container_client(f"{REGISTRY_CONTAINER}-{suffix}"), changes)


def name_of(registry: TenantRegistry, tenant_id: str) -> str:
    found = registry.get(tenant_id)
    assert found is not None
    return found.tenant.display_name


def tenant(tenant_id: str, name: str = "Contoso") -> tenants.Tenant:
    return tenants.parse_tenant({"tenantId": tenant_id, "displayName": name})


def test_add_get_list_and_update_each_logged(registry: TenantRegistry) -> None:
    added = registry.add(tenant(A), ADMIN, AT)
    registry.add(tenant(B, "Fabrikam"), ADMIN, AT)
    assert registry.get(A) == added
    assert [r.tenant.tenant_id for r in registry.list()] == [A, B]

    later = AT + timedelta(hours=1)
    updated = registry.update(
        A, lambda t: tenants.apply_patch(t, {"displayName": "Contoso EU"}), ADMIN, later
    )
    assert updated.tenant.display_name == "Contoso EU"
    assert updated.etag != added.etag
    assert (updated.created_at, updated.updated_at) == (AT.isoformat(), later.isoformat())
    assert name_of(registry, B) == "Fabrikam"  # a change to A leaves B alone

    records = registry.changes.records()
    assert [(r["action"], r["tenantId"]) for r in records] == [
        ("created", A),
        ("created", B),
        ("updated", A),
    ]
    assert list(records[2]["changed"]) == ["displayName"]
    assert records[2]["by"] == ADMIN
    assert tenants.verify_chain(records) == []
    assert "Contoso" not in repr(records)


def test_a_second_add_of_one_tenant_is_refused(registry: TenantRegistry) -> None:
    registry.add(tenant(A), ADMIN, AT)
    with pytest.raises(TenantExists):
        registry.add(tenant(A, "Other"), ADMIN, AT)
    assert len(registry.changes.records()) == 1


def test_an_update_on_a_stale_version_is_refused_and_unknown_is_unknown(
    registry: TenantRegistry,
) -> None:
    first = registry.add(tenant(A), ADMIN, AT)
    rename = lambda name: lambda t: tenants.apply_patch(t, {"displayName": name})  # noqa: E731
    registry.update(A, rename("One"), ADMIN, AT, if_match=first.etag)
    with pytest.raises(VersionMismatch):
        registry.update(A, rename("Two"), ADMIN, AT, if_match=first.etag)
    assert name_of(registry, A) == "One"
    with pytest.raises(TenantUnknown):
        registry.update(B, rename("x"), ADMIN, AT)
    same = registry.update(A, rename("One"), ADMIN, AT)  # no change: nothing written or logged
    assert len(registry.changes.records()) == 2
    assert same.tenant.display_name == "One"


class RefusingLog(ChangeLog):
    def append(self, build):
        raise ChangeLogError("the evidence account refused")


def test_a_change_the_log_refuses_does_not_stand(service: BlobServiceClient) -> None:
    suffix = uuid.uuid4().hex[:8]
    good = ChangeLog(service.get_container_client(f"evidence-{suffix}"))
    container = service.get_container_client(f"{REGISTRY_CONTAINER}-{suffix}")
    TenantRegistry(container, good).add(tenant(A), ADMIN, AT)
    refusing = TenantRegistry(container, RefusingLog(container))

    with pytest.raises(ChangeLogError):
        refusing.update(A, lambda t: tenants.apply_patch(t, {"displayName": "X"}), ADMIN, AT)
    assert name_of(refusing, A) == "Contoso"
    with pytest.raises(ChangeLogError):
        refusing.add(tenant(B), ADMIN, AT)
    assert refusing.get(B) is None
