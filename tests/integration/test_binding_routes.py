"""Callers bound to tenants, end to end through the real routes, use cases and registry
(Azurite), with ``TENANCY=multi``: the operator (``TENANCY_OPERATORS``) binds function keys;
a key bound to tenant A sees A alone, gets 404 for B's registry entry and consent link, may
neither add tenants nor touch bindings; a key bound nowhere reaches nothing; a removed binding
stops working at the next request; every change is in the registry's change log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from devhost.azurite import Azurite
from dsr_export.adapters.tenant_registry import TenantRegistry
from dsr_export.domain import tenants
from dsr_export.domain.bindings import Binding, PrincipalKind
from tests.integration.tenant_fixtures import fingerprint, multi_tenancy, registry_on_azurite
from tests.unit.intake_fakes import FUNCTION_KEY, app_settings, request

pytestmark = pytest.mark.azurite

A = "00000000-0000-4000-8000-0000000000a1"
B = "00000000-0000-4000-8000-0000000000b2"
T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
OPERATOR = FUNCTION_KEY
BOUND_TO_A = "key-of-tenant-a"
STRANGER = "key-bound-nowhere"


@pytest.fixture
def registry(azurite: Azurite, tls_files, monkeypatch, swap) -> TenantRegistry:
    return registry_on_azurite(azurite, tls_files, monkeypatch, swap, T0)


@pytest.fixture
def multi():
    with multi_tenancy():
        yield


def answer(user_function, name: str, *args: Any, key: str = OPERATOR, **kwargs: Any):
    entry = user_function(name)
    durable = getattr(entry, "client_function", None)  # the routes that count DSRs
    req = request(*args, key=key, **kwargs)
    response = asyncio.run(durable(req=req, client=None) if durable else entry(req=req))
    body = json.loads(response.get_body()) if response.get_body() else None
    return response, body


def tenant_route(user_function, method: str, tenant: str, key: str, suffix: str = "", **kw: Any):
    name = "tenant_consent_link" if suffix else "tenant_item"
    return answer(
        user_function,
        name,
        method,
        f"tenants/{tenant}{suffix}",
        kw.pop("body", None),
        key=key,
        route_params={"tenantId": tenant},
        **kw,
    )


def bind(user_function, principal: str, payload: Any, key: str = OPERATOR):
    return answer(
        user_function,
        "binding_item",
        "PUT" if payload is not None else "DELETE",
        f"bindings/{principal}",
        payload,
        key=key,
        route_params={"principal": principal},
    )


def register(user_function, *tenant_ids: str) -> None:
    for tenant in tenant_ids:
        made, body = answer(
            user_function,
            "tenants_collection",
            "POST",
            "tenants",
            {"tenantId": tenant, "displayName": f"T{tenant[-2:]}"},
        )
        assert made.status_code == 201, body


def test_a_key_bound_to_a_reaches_a_alone_until_unbound(user_function, registry, multi) -> None:
    register(user_function, A, B)
    made, body = bind(user_function, fingerprint(BOUND_TO_A), {"tenants": [A]})
    assert made.status_code == 201, body
    assert body["kind"] == "functionKey"
    assert body["updatedBy"] == {"kind": "functionKey", "id": fingerprint(OPERATOR)}

    listed, body = answer(user_function, "tenants_collection", "GET", "tenants", key=BOUND_TO_A)
    assert (listed.status_code, [t["tenantId"] for t in body["tenants"]]) == (200, [A])
    assert tenant_route(user_function, "GET", A, BOUND_TO_A)[0].status_code == 200
    for method, suffix, extra in (
        ("GET", "", {}),
        ("PATCH", "", {"body": {"displayName": "Mine now"}}),
        ("GET", "/consent-link", {}),
    ):
        refused, body = tenant_route(user_function, method, B, BOUND_TO_A, suffix, **extra)
        unknown, unknown_body = tenant_route(
            user_function, method, "00000000-0000-4000-8000-0000000000ff", OPERATOR, suffix, **extra
        )
        # B's entry is answered exactly as a tenant nobody registered: 404, nothing leaked.
        assert (refused.status_code, body["title"]) == (404, "Unknown tenant"), method
        assert (unknown.status_code, unknown_body["title"]) == (404, "Unknown tenant")
    assert registry.get(B).tenant.display_name == "Tb2"

    added, body = answer(
        user_function,
        "tenants_collection",
        "POST",
        "tenants",
        {"tenantId": "00000000-0000-4000-8000-0000000000c3", "displayName": "C"},
        key=BOUND_TO_A,
    )
    assert (added.status_code, body["detail"]) == (
        403,
        "only a caller bound to every tenant may add a tenant",
    )
    escalate, body = bind(user_function, fingerprint(BOUND_TO_A), {"tenants": "*"}, BOUND_TO_A)
    assert escalate.status_code == 403
    listing, _ = answer(user_function, "bindings_collection", "GET", "bindings", key=BOUND_TO_A)
    assert listing.status_code == 403

    gone, body = bind(user_function, fingerprint(BOUND_TO_A), None)
    assert (gone.status_code, body["removed"]) == (200, True)
    # Read on every request: the very next one is bound nowhere.
    listed, body = answer(user_function, "tenants_collection", "GET", "tenants", key=BOUND_TO_A)
    assert (listed.status_code, body["count"]) == (200, 0)
    assert tenant_route(user_function, "GET", A, BOUND_TO_A)[0].status_code == 404


def test_a_key_bound_nowhere_reaches_nothing(user_function, registry, multi) -> None:
    register(user_function, A)
    listed, body = answer(user_function, "tenants_collection", "GET", "tenants", key=STRANGER)
    assert (listed.status_code, body["count"]) == (200, 0)
    assert tenant_route(user_function, "GET", A, STRANGER)[0].status_code == 404


def test_bindings_are_validated_and_every_change_is_logged(user_function, registry, multi) -> None:
    register(user_function, A, B)
    group = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    refused, body = bind(user_function, group, {"kind": "team", "tenants": [A, "c0ffee"]})
    assert refused.status_code == 400
    assert refused.mimetype == "application/problem+json"
    assert sorted(e["pointer"] for e in body["errors"]) == ["/kind", "/tenants/1"]
    unregistered = "00000000-0000-4000-8000-0000000000c3"
    refused, body = bind(user_function, group, {"kind": "group", "tenants": [unregistered]})
    assert body["errors"] == [{"pointer": "/tenants/0", "detail": "is not a registered tenant"}]
    bad, body = bind(user_function, "x@contoso.com", {"kind": "user", "tenants": [A]})
    assert (bad.status_code, body["errors"][0]["pointer"]) == (400, "/principal")

    assert bind(user_function, group, {"kind": "group", "tenants": [A]})[0].status_code == 201
    again, body = bind(user_function, group, {"kind": "group", "tenants": [A, B]})
    assert (again.status_code, body["tenants"]) == (200, sorted([A, B]))
    same, _ = bind(user_function, group, {"kind": "group", "tenants": [B, A]})
    assert same.status_code == 200
    got, body = answer(
        user_function, "binding_item", "GET", f"bindings/{group}", route_params={"principal": group}
    )
    assert (got.status_code, body["kind"]) == (200, "group")
    _, body = answer(user_function, "bindings_collection", "GET", "bindings")
    assert [b["principal"] for b in body["bindings"]] == [group]
    assert bind(user_function, group, None)[0].status_code == 200
    missing, body = bind(user_function, group, None)
    assert (missing.status_code, body["title"]) == (404, "Unknown binding")

    records = registry.changes.records()
    assert [r["action"] for r in records] == ["created", "created", "bound", "rebound", "unbound"]
    assert records[3]["tenants"] == {"from": [A], "to": sorted([A, B])}
    assert all(r["by"] == {"kind": "functionKey", "id": fingerprint(OPERATOR)} for r in records)
    assert tenants.verify_chain(records) == []


def test_bindings_change_nothing_in_single_tenancy(user_function, registry) -> None:
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Admin"):
        refused, body = bind(user_function, fingerprint(BOUND_TO_A), {"tenants": "*"})
    assert (refused.status_code, body["title"]) == (409, "Single tenancy")


def test_unreadable_bindings_refuse_the_caller(user_function, registry, multi, swap) -> None:
    class Down:
        def all(self) -> list[Any]:
            raise HttpResponseError("storage down")

    class Broken:
        bindings = Down()

    swap(tenant_registry=Broken())
    refused, body = answer(user_function, "tenants_collection", "GET", "tenants", key=STRANGER)
    assert (refused.status_code, body["type"].rsplit("#", 1)[1]) == (503, "bindings-unavailable")
    assert refused.headers["Retry-After"] == "60"


def test_a_bindings_document_the_app_cannot_read_refuses_the_caller(
    user_function, registry, multi
) -> None:
    register(user_function, A)
    bind(user_function, fingerprint(BOUND_TO_A), {"tenants": [A]})
    blob = registry._container.get_blob_client("bindings.json")
    document = json.loads(blob.download_blob().readall())
    document["bindings"][0]["binding"]["kind"] = "root"  # edited in storage by hand
    blob.upload_blob(json.dumps(document), overwrite=True)
    refused, body = answer(user_function, "tenants_collection", "GET", "tenants", key=BOUND_TO_A)
    assert (refused.status_code, body["type"].rsplit("#", 1)[1]) == (503, "bindings-unavailable")


def test_a_write_on_a_stale_version_is_made_again_on_the_new_one(registry) -> None:
    """Two operators binding at once: neither change is lost (the document is written on its
    ETag, and a writer that lost the race reads again)."""
    store = registry.bindings
    first = Binding("sha256:0000000000000001", PrincipalKind.FUNCTION_KEY, frozenset({A}))
    second = Binding("sha256:0000000000000002", PrincipalKind.FUNCTION_KEY, None)
    stale_read = store._read  # what a racing writer had read before the other one wrote
    snapshot = stale_read()
    store.put(first, {"kind": "user", "id": "u1"}, T0)
    calls = iter([snapshot])
    store._read = lambda: next(calls, None) or stale_read()
    store.put(second, {"kind": "user", "id": "u2"}, T0)
    assert {b.binding.principal for b in registry.bindings.all()} == {
        first.principal,
        second.principal,
    }
    assert [r["action"] for r in registry.changes.records()] == ["bound", "bound"]


def test_a_change_the_log_refuses_is_undone(registry, monkeypatch) -> None:
    store = registry.bindings
    kept = Binding("sha256:0000000000000001", PrincipalKind.FUNCTION_KEY, frozenset({A}))
    store.put(kept, {"kind": "user", "id": "u1"}, T0)

    def refuse(build: Any) -> Any:
        raise HttpResponseError("the evidence account refused")

    monkeypatch.setattr(registry.changes, "append", refuse)
    lost = Binding("sha256:0000000000000002", PrincipalKind.FUNCTION_KEY, None)
    with pytest.raises(HttpResponseError):
        registry.bindings.put(lost, {"kind": "user", "id": "u2"}, T0)
    with pytest.raises(HttpResponseError):
        registry.bindings.delete(kept.principal, {"kind": "user", "id": "u2"}, T0)
    assert [b.binding for b in registry.bindings.all()] == [kept]
