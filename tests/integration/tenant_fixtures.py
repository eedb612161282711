"""What the tenant-registry route tests share: a registry of their own on Azurite, and the
settings of a multi-tenant deployment whose test key is its operator."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.tls import TlsFiles
from dsr_export.adapters.tenant_registry import REGISTRY_CONTAINER, ChangeLog, TenantRegistry
from dsr_export.domain.callers import from_function_key
from tests.unit.intake_fakes import FUNCTION_KEY, app_settings

MULTI_CLIENT = "00000000-0000-4000-8000-0000000000ac"


def fingerprint(key: str) -> str:
    """The principal a function key is bound as."""
    return from_function_key(key, ()).id


def registry_on_azurite(
    azurite: Azurite,
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    swap: Callable[..., None],
    now: datetime,
) -> TenantRegistry:
    """A registry and change log in containers no other test uses, swapped in as the app's,
    its clock standing at ``now``."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    service = BlobServiceClient(
        azurite.blob_endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
    )
    suffix = uuid.uuid4().hex[:8]
    changes = ChangeLog(service.get_container_client(f"evidence-{suffix}"))
    built = TenantRegistry(service.get_container_client(f"{REGISTRY_CONTAINER}-{suffix}"), changes)
    swap(tenant_registry=built, clock=lambda: now)
    return built


@contextmanager
def multi_tenancy(**more: Any) -> Iterator[None]:
    """``TENANCY=multi``, key holders ``DSR.Admin``, the test key bound to every tenant."""
    with app_settings(
        AUTH_FUNCTION_KEY_ROLES="DSR.Admin",
        TENANCY="multi",
        MULTI_TENANT_CLIENT_ID=MULTI_CLIENT,
        TENANCY_OPERATORS=fingerprint(FUNCTION_KEY),
        **more,
    ):
        yield
