"""Offboarding a tenant (issue 21), end to end through the real routes, use cases and registry
(Azurite), with ``TENANCY=multi``: retiring keeps the tenant as a record, takes it out of the
default list, of every binding and of the deep health check, refuses its PATCH and new
bindings, is refused while its DSRs are in flight unless forced, and is recorded (who, when,
forced or not, each binding swept) in the hash-chained change log; reinstating is recorded the
same way. Then the races: a stale ``If-Match``, and a binding made while the tenant retires."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.azurite import Azurite
from dsr_export.adapters.tenant_registry import TenantRegistry
from dsr_export.domain import dsr_keys, tenants
from dsr_export.domain.bindings import Binding, PrincipalKind
from dsr_export.domain.request import InvalidRequest
from tests.integration.tenant_fixtures import fingerprint, multi_tenancy, registry_on_azurite
from tests.unit.intake_fakes import FUNCTION_KEY, FakeDurableClient, request

pytestmark = pytest.mark.azurite

A = "00000000-0000-4000-8000-0000000000a1"
B = "00000000-0000-4000-8000-0000000000b2"
UNKNOWN = "00000000-0000-4000-8000-0000000000ff"
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
OPERATOR = FUNCTION_KEY
OF_A_AND_B = "key-of-a-and-b"
OF_A = "key-of-a"


@pytest.fixture
def registry(azurite: Azurite, tls_files, monkeypatch, swap) -> TenantRegistry:
    return registry_on_azurite(azurite, tls_files, monkeypatch, swap, T0)


@pytest.fixture
def multi():
    with multi_tenancy():
        yield


@pytest.fixture
def hub(swap) -> FakeDurableClient:
    """The task hub behind the retire route's Durable client: a tenant's DSRs in flight are
    its live DSR instances there, which the route counts (``intake.tenant_dsrs``)."""
    fake = FakeDurableClient()
    swap(task_hub=lambda client: fake)
    return fake


def answer(user_function, name: str, *args: Any, key: str = OPERATOR, **kwargs: Any):
    entry = user_function(name)
    req = request(*args, key=key, **kwargs)
    # The routes that count DSRs take a Durable client (the ``hub`` fixture stands behind it).
    durable = getattr(entry, "client_function", None)
    called = durable(req=req, client=None) if durable else entry(req=req)
    response = asyncio.run(called)
    body = json.loads(response.get_body()) if response.get_body() else None
    return response, body


def lifecycle(user_function, action: str, tenant: str, body: Any = None, **kw: Any):
    return answer(
        user_function,
        f"tenant_{action}",
        "POST",
        f"tenants/{tenant}/{action}",
        body,
        route_params={"tenantId": tenant},
        **kw,
    )


def listed(user_function, state: str | None = None, key: str = OPERATOR) -> list[str]:
    params = {"state": state} if state else None
    got, body = answer(
        user_function, "tenants_collection", "GET", "tenants", params=params, key=key
    )
    assert got.status_code == 200, body
    return [t["tenantId"] for t in body["tenants"]]


def setup(user_function) -> None:
    for tenant in (A, B):
        made, body = answer(
            user_function,
            "tenants_collection",
            "POST",
            "tenants",
            {"tenantId": tenant, "displayName": f"T{tenant[-2:]}"},
        )
        assert made.status_code == 201, body
    for key, bound in ((OF_A_AND_B, [A, B]), (OF_A, [A])):
        principal = fingerprint(key)
        made, body = answer(
            user_function,
            "binding_item",
            "PUT",
            f"bindings/{principal}",
            {"tenants": bound},
            route_params={"principal": principal},
        )
        assert made.status_code == 201, body


def test_a_retired_tenant_is_a_record_no_binding_reaches(
    user_function, registry, multi, hub
) -> None:
    setup(user_function)
    retired, body = lifecycle(user_function, "retire", A)
    assert retired.status_code == 200, body
    assert (body["state"], body["retiredAt"], body["retiredBy"]) == (
        "retired",
        T0.isoformat(),
        {"kind": "functionKey", "id": fingerprint(OPERATOR)},
    )
    assert body["bindingsChanged"] == sorted([fingerprint(OF_A_AND_B), fingerprint(OF_A)])
    assert retired.headers["ETag"] == registry.get(A).etag
    assert registry.get(A).tenant.accepts_dsrs is False

    # The default list leaves it out; asked for, it is there.
    assert listed(user_function) == [B]
    assert listed(user_function, "retired") == [A]
    assert listed(user_function, "all") == [A, B]
    bad, body = answer(user_function, "tenants_collection", "GET", "tenants", params={"state": "x"})
    assert (bad.status_code, body["errors"][0]["pointer"]) == (400, "/state")
    # Its bindings no longer reach it: a key bound to A alone is bound nowhere now.
    assert listed(user_function, "all", OF_A_AND_B) == [B]
    assert listed(user_function, "all", OF_A) == []
    assert {b.binding.principal: b.binding.tenants for b in registry.bindings.all()} == {
        fingerprint(OF_A_AND_B): frozenset({B})
    }
    # The record stays as it was retired, and no new binding may name it.
    patched, body = answer(
        user_function,
        "tenant_item",
        "PATCH",
        f"tenants/{A}",
        {"displayName": "Gone"},
        route_params={"tenantId": A},
    )
    assert (patched.status_code, body["title"]) == (409, "Tenant retired")
    assert patched.mimetype == "application/problem+json"
    principal = fingerprint(OF_A)
    rebind, body = answer(
        user_function,
        "binding_item",
        "PUT",
        f"bindings/{principal}",
        {"tenants": [A]},
        route_params={"principal": principal},
    )
    assert (rebind.status_code, body["errors"][0]["pointer"]) == (400, "/tenants/0")
    link, body = answer(
        user_function,
        "tenant_consent_link",
        "GET",
        f"tenants/{A}/consent-link",
        route_params={"tenantId": A},
    )
    assert (link.status_code, body["title"]) == (409, "Tenant retired")

    # Retiring again changes nothing; reinstating makes it active, its bindings not given back.
    again, body = lifecycle(user_function, "retire", A)
    assert (again.status_code, body["bindingsChanged"]) == (200, [])
    back, body = lifecycle(user_function, "reinstate", A)
    assert (back.status_code, body["state"], body["retiredAt"]) == (200, "active", None)
    assert listed(user_function) == [A, B]
    assert listed(user_function, key=OF_A) == []

    records = registry.changes.records()
    assert [r["action"] for r in records] == [
        "created",
        "created",
        "bound",
        "bound",
        "retired",
        "rebound",
        "unbound",
        "reinstated",
    ]
    assert sorted(records[4]["changed"]) == ["retiredAt", "retiredBy", "state"]
    assert "forced" not in records[4]
    assert all(r["cause"] == "retired" and r["tenantId"] == A for r in records[5:7])
    assert records[5]["tenants"] == {"from": sorted([A, B]), "to": [B]}
    assert tenants.verify_chain(records) == []


def test_retiring_is_refused_while_dsrs_are_in_flight_unless_forced(
    user_function, registry, multi, hub
) -> None:
    setup(user_function)
    # Two of A's DSRs are live; one has ended, and B's live one is B's: neither counts.
    for request_id, runtime in (("R-1", "Running"), ("R-2", "Pending"), ("R-3", "Completed")):
        hub.add(dsr_keys.dsr_id(A, request_id), runtime=runtime)
    hub.add(dsr_keys.dsr_id(B, "R-1"))
    refused, body = lifecycle(user_function, "retire", B)
    assert (refused.status_code, body["title"]) == (409, "DSRs in flight")
    assert "1 DSR(s) in flight" in body["detail"]
    # Only B's DSRs were read (its key is the instance id prefix), and only the live ones.
    assert hub.prefixes[-1] == f"{dsr_keys.tenant_key(B)}:"
    refused, body = lifecycle(user_function, "retire", A)
    assert (refused.status_code, body["title"]) == (409, "DSRs in flight")
    assert refused.mimetype == "application/problem+json"
    assert "2 DSR(s) in flight" in body["detail"]
    assert '"force": true' in body["detail"]
    assert registry.get(A).tenant.accepts_dsrs
    invalid, body = lifecycle(user_function, "retire", A, {"force": "yes"})
    assert (invalid.status_code, body["errors"][0]["pointer"]) == (400, "/force")

    # Only an operator bound to every tenant may retire or reinstate: a key bound to A may not
    # (403 for A), and another tenant is to it what an unregistered one is (404, same body).
    for action in ("retire", "reinstate"):
        forbidden, body = lifecycle(user_function, action, A, {"force": True}, key=OF_A)
        assert forbidden.status_code == 403, action
        other, other_body = lifecycle(user_function, action, B, {"force": True}, key=OF_A)
        nothing, nothing_body = lifecycle(user_function, action, UNKNOWN, {"force": True}, key=OF_A)
        assert (other.status_code, nothing.status_code) == (404, 404), action
        assert other_body["title"] == nothing_body["title"], action
        assert other_body["detail"].replace(B, "X") == nothing_body["detail"].replace(UNKNOWN, "X")
    unknown = "00000000-0000-4000-8000-0000000000ff"
    assert lifecycle(user_function, "retire", unknown)[0].status_code == 404
    assert lifecycle(user_function, "reinstate", unknown)[0].status_code == 404

    forced, body = lifecycle(user_function, "retire", A, {"force": True})
    assert (forced.status_code, body["state"]) == (200, "retired")
    record = next(r for r in registry.changes.records() if r["action"] == "retired")
    assert (record["forced"], record["inFlight"]) == (True, 2)


def test_the_deep_health_check_leaves_a_retired_tenant_out(
    user_function, registry, multi, hub, swap
) -> None:
    from intake import tenant_checks

    class NoCredentials:
        def __init__(self) -> None:
            self.asked: list[str] = []
            self.forgotten: list[str] = []

        def for_tenant(self, tenant_id: str) -> Any:
            self.asked.append(tenant_id)
            raise AssertionError("a retired tenant is never checked")

        def forget(self, tenant_id: str) -> None:
            self.forgotten.append(tenant_id)

    credentials = NoCredentials()
    swap(tenant_credentials=credentials)
    answer(
        user_function, "tenants_collection", "POST", "tenants", {"tenantId": A, "displayName": "A"}
    )
    assert lifecycle(user_function, "retire", A)[0].status_code == 200
    assert credentials.forgotten == [A]  # its credential and cached tokens dropped
    checks: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    env = {"TENANCY": "multi", "MULTI_TENANT_CLIENT_ID": "00000000-0000-4000-8000-0000000000ac"}
    faults = tenant_checks.deep(env, checks, extra, request("GET", "health", key=OPERATOR))
    assert (faults, checks["tenants"], extra["tenants"], credentials.asked) == ([], "ok", {}, [])


def test_a_stale_version_is_refused_and_a_binding_racing_a_retirement_never_stands(
    registry,
) -> None:
    by = {"kind": "user", "id": "00000000-0000-4000-8000-00000000aaaa"}
    read = registry.add(tenants.parse_tenant({"tenantId": A, "displayName": "A"}), by, T0)
    registry.update(A, lambda t: tenants.apply_patch(t, {"displayName": "A2"}), by, T0)
    with pytest.raises(tenants.VersionMismatch):
        registry.retire(A, by, T0, if_match=read.etag)
    assert registry.get(A).tenant.accepts_dsrs

    # A binding to A checked while A was active, written while A retires: the retirement lands
    # between the binding's check and its write, and the binding is refused on its retry.
    store = registry.bindings
    principal = "sha256:00000000000000a1"
    binding = Binding(principal, PrincipalKind.FUNCTION_KEY, frozenset({A}))
    checks = iter(range(3))

    def guard() -> None:
        if next(checks) == 0:  # the first check passes; then the tenant retires meanwhile
            registry.retire(A, by, T0)
            store.put(Binding("sha256:00000000000000b2", PrincipalKind.FUNCTION_KEY, None), by, T0)
            return
        active = {r.tenant.tenant_id for r in registry.list() if r.tenant.accepts_dsrs}
        if A not in active:
            raise InvalidRequest([])

    with pytest.raises(InvalidRequest):
        store.put(binding, by, T0, guard=guard)
    assert store.get(principal) is None
    assert tenants.verify_chain(registry.changes.records()) == []


def test_a_tenant_keeps_its_evidence_prefix_and_its_account_while_dsrs_hold_it(
    user_function, registry, multi, hub
) -> None:
    """Issue 21: a DSR's evidence chain is found by its tenant's ``evidencePrefix`` and its
    containers in its tenant's ``exportsAccount``, as the registry says at each step."""
    setup(user_function)

    def patch(tenant: str, change: dict[str, Any]):
        return answer(
            user_function,
            "tenant_item",
            "PATCH",
            f"tenants/{tenant}",
            change,
            route_params={"tenantId": tenant},
        )

    moved, body = patch(A, {"evidencePrefix": "elsewhere"})
    assert (moved.status_code, [e["pointer"] for e in body["errors"]]) == (400, ["/evidencePrefix"])
    assert "split each chain" in body["errors"][0]["detail"]
    # The same prefix again, or null (its default, which it has), changes nothing.
    for same in (f"t-{A}", None):
        kept, body = patch(A, {"evidencePrefix": same, "displayName": "A again"})
        assert (kept.status_code, body["evidencePrefix"]) == (200, f"t-{A}"), body

    # An ended DSR of A's whose history is kept may still have containers: A's account stays.
    hub.add(dsr_keys.dsr_id(A, "R-1"), runtime="Completed")
    hub.add(dsr_keys.dsr_id(B, "R-1"), runtime="Running")
    account = "https://residency.blob.core.windows.net"
    refused, body = patch(A, {"exportsAccount": account})
    assert (refused.status_code, body["title"]) == (409, "Exports account in use"), body
    assert "1 DSR(s)" in body["detail"]
    assert registry.get(A).tenant.exports_account is None
    assert hub.prefixes == [f"{dsr_keys.tenant_key(A)}:"]
    # B's DSR is B's: A's account moves once A's DSR is purged; a PATCH not naming the
    # account reads no task hub.
    del hub.instances[dsr_keys.dsr_id(A, "R-1")]
    done, body = patch(A, {"exportsAccount": account})
    assert (done.status_code, body["exportsAccount"]) == (200, account), body
    assert patch(B, {"displayName": "B2"})[0].status_code == 200
    assert len(hub.prefixes) == 2
    refused, body = patch(B, {"exportsAccount": account})
    assert (refused.status_code, body["title"]) == (409, "Exports account in use")
