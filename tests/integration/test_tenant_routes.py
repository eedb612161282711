"""``/api/tenants`` end to end through the real routes, use cases and registry (Azurite): the
app role ``DSR.Admin``, problem documents naming each field, 404 for an unknown tenant, versions
(``ETag``/``If-Match``), the consent link, and every change in the change log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.azurite import Azurite
from dsr_export.adapters.tenant_registry import TenantRegistry
from dsr_export.domain import tenants
from dsr_export.domain.callers import from_function_key
from tests.integration.tenant_fixtures import registry_on_azurite
from tests.unit.intake_fakes import FUNCTION_KEY, app_settings, request

pytestmark = pytest.mark.azurite

A = "00000000-0000-4000-8000-0000000000c1"
MULTI_CLIENT = "00000000-0000-4000-8000-0000000000ac"
T0 = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: The test function key bound to every tenant by configuration (TENANCY_OPERATORS).
OPERATOR_KEY = {"TENANCY_OPERATORS": from_function_key(FUNCTION_KEY, ()).id}


@pytest.fixture
def registry(azurite: Azurite, tls_files, monkeypatch, swap) -> TenantRegistry:
    return registry_on_azurite(azurite, tls_files, monkeypatch, swap, T0)


@pytest.fixture
def admin():
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Admin"):
        yield


def answer(user_function, name: str, *args: Any, **kwargs: Any):
    entry = user_function(name)
    durable = getattr(entry, "client_function", None)  # the routes that count DSRs
    req = request(*args, **kwargs)
    response = asyncio.run(durable(req=req, client=None) if durable else entry(req=req))
    body = json.loads(response.get_body()) if response.get_body() else None
    return response, body


def test_register_read_list_and_change_a_tenant(user_function, registry, admin) -> None:
    payload = {"tenantId": A.upper(), "displayName": "Contoso", "regulation": "ccpa"}
    created, body = answer(user_function, "tenants_collection", "POST", "tenants", payload)
    assert created.status_code == 201, body
    assert created.headers["Location"] == f"/api/tenants/{A}"
    assert body["tenantId"] == A
    assert body["regulation"] == "ccpa"
    assert body["updatedBy"]["kind"] == "functionKey"
    etag = created.headers["ETag"]

    got, body = answer(
        user_function, "tenant_item", "GET", f"tenants/{A}", route_params={"tenantId": A}
    )
    assert (got.status_code, got.headers["ETag"], body["displayName"]) == (200, etag, "Contoso")
    _, body = answer(user_function, "tenants_collection", "GET", "tenants")
    assert (body["count"], body["tenants"][0]["tenantId"]) == (1, A)

    changed, body = answer(
        user_function,
        "tenant_item",
        "PATCH",
        f"tenants/{A}",
        {"displayName": "Contoso EU", "quotaBudget": {"submitsPerDay": 250}},
        route_params={"tenantId": A},
        headers={"If-Match": etag},
    )
    assert changed.status_code == 200, body
    assert body["quotaBudget"] == {"submitsPerDay": 250, "pollsPerHour": 10000}
    assert changed.headers["ETag"] != etag
    stale, body = answer(
        user_function,
        "tenant_item",
        "PATCH",
        f"tenants/{A}",
        {"displayName": "Late"},
        route_params={"tenantId": A},
        headers={"If-Match": etag},
    )
    assert (stale.status_code, body["title"]) == (409, "Tenant changed")

    records = registry.changes.records()
    assert [(r["action"], sorted(r["changed"])) for r in records] == [
        ("created", sorted(tenants.Tenant(A, "x").to_json())),
        ("updated", ["displayName", "quotaBudget"]),
    ]
    assert tenants.verify_chain(records) == []
    assert "Contoso" not in json.dumps(records)


def test_refusals_name_the_field_and_never_echo_a_secret(user_function, registry, admin) -> None:
    bad = {"tenantId": A, "displayName": "C", "callbackSecretRef": SECRET, "cloud": "mars"}
    refused, body = answer(user_function, "tenants_collection", "POST", "tenants", bad)
    assert refused.status_code == 400
    assert refused.mimetype == "application/problem+json"
    assert sorted(e["pointer"] for e in body["errors"]) == ["/callbackSecretRef", "/cloud"]
    assert SECRET not in refused.get_body().decode()

    unknown, body = answer(
        user_function, "tenant_item", "GET", f"tenants/{A}", route_params={"tenantId": A}
    )
    assert (unknown.status_code, body["title"]) == (404, "Unknown tenant")
    patch_unknown, _ = answer(
        user_function,
        "tenant_item",
        "PATCH",
        f"tenants/{A}",
        {"displayName": "x"},
        route_params={"tenantId": A},
    )
    assert patch_unknown.status_code == 404
    not_guid, body = answer(
        user_function, "tenant_item", "GET", "tenants/contoso", route_params={"tenantId": "contoso"}
    )
    assert (not_guid.status_code, body["errors"][0]["pointer"]) == (400, "/tenantId")

    answer(
        user_function, "tenants_collection", "POST", "tenants", {"tenantId": A, "displayName": "C"}
    )
    again, body = answer(
        user_function, "tenants_collection", "POST", "tenants", {"tenantId": A, "displayName": "D"}
    )
    assert (again.status_code, body["title"]) == (409, "Tenant exists")


def test_only_dsr_admin_may_touch_the_registry(user_function, registry) -> None:
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Submit,DSR.Read,DSR.Manage"):
        refused, body = answer(user_function, "tenants_collection", "GET", "tenants")
    assert (refused.status_code, body["detail"]) == (403, "the caller lacks the app role DSR.Admin")


def test_the_consent_link_needs_multi_tenancy(user_function, registry, admin) -> None:
    answer(
        user_function,
        "tenants_collection",
        "POST",
        "tenants",
        {"tenantId": A, "displayName": "C", "cloud": "usgov"},
    )
    route = {"route_params": {"tenantId": A}}
    single, body = answer(
        user_function, "tenant_consent_link", "GET", f"tenants/{A}/consent-link", **route
    )
    assert (single.status_code, body["title"]) == (409, "Single tenancy")
    # In multi a caller reaches the tenants it is bound to: this key is the operator's.
    with app_settings(TENANCY="multi", MULTI_TENANT_CLIENT_ID=MULTI_CLIENT, **OPERATOR_KEY):
        link, body = answer(
            user_function, "tenant_consent_link", "GET", f"tenants/{A}/consent-link", **route
        )
        other = "00000000-0000-4000-8000-0000000000c9"
        missing, _ = answer(
            user_function,
            "tenant_consent_link",
            "GET",
            f"tenants/{other}/consent-link",
            route_params={"tenantId": other},
        )
    assert link.status_code == 200, body
    assert body["consentLink"] == (
        f"https://login.microsoftonline.us/{A}/v2.0/adminconsent?client_id={MULTI_CLIENT}"
        "&scope=https://graph.microsoft.us/.default"
    )
    assert body["permissions"] == ["User.Export.All", "User.Read.All"]
    assert missing.status_code == 404
