"""Callers bound to tenants (issue 21): the rules of a binding, a caller's scope as the union of
the bindings that name it, and the change log's records; then, through the real routes with a
real token, that a customer tenant's token authorises nothing and that a group binds its
members."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.entra import EntraTenant
from dsr_export.domain import tenants
from dsr_export.domain.bindings import (
    Binding,
    Bound,
    PrincipalKind,
    change_record,
    from_stored,
    parse_binding,
    scope_for,
    valid_principal,
    without_tenant,
)
from dsr_export.domain.callers import Caller, Role, TenantScope, from_claims, from_function_key
from dsr_export.domain.request import InvalidRequest
from dsr_export.settings import SettingsError, TenancySettings
from tests.unit.intake_fakes import app_settings, body, request

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
USER = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
GROUP = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
KEY = from_function_key("a-key", ()).id
T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
MULTI = {"TENANCY": "multi", "MULTI_TENANT_CLIENT_ID": "00000000-0000-4000-8000-0000000000ac"}


def _pointers(exc: pytest.ExceptionInfo[InvalidRequest]) -> list[str]:
    return sorted(error.pointer for error in exc.value.errors)


# -- the rules ---------------------------------------------------------------------------------


def test_a_retired_tenant_is_taken_out_of_a_binding_and_an_empty_binding_goes() -> None:
    both = Binding(USER, PrincipalKind.USER, frozenset({A, B}))
    assert without_tenant(both, A) == Binding(USER, PrincipalKind.USER, frozenset({B}))
    assert without_tenant(both, C) is both
    assert without_tenant(Binding(KEY, PrincipalKind.FUNCTION_KEY, frozenset({A})), A) is None
    everywhere = Binding(GROUP, PrincipalKind.GROUP, None)  # operators keep the record in reach
    assert without_tenant(everywhere, A) is everywhere
    record = change_record(
        previous_hash=None,
        at=T0,
        by={"kind": "user", "id": USER},
        before=both,
        after=without_tenant(both, A),
        extra={"cause": "retired", "tenantId": A},
    )
    assert (record["action"], record["cause"], record["tenantId"]) == ("rebound", "retired", A)
    assert record["tenants"] == {"from": sorted([A, B]), "to": [B]}


def test_a_binding_names_registered_tenants_or_every_tenant() -> None:
    bound = parse_binding(USER, {"kind": "user", "tenants": [A.upper(), A, B]}, {A, B})
    assert bound == Binding(USER, PrincipalKind.USER, frozenset({A, B}))
    everywhere = parse_binding(GROUP, {"kind": "group", "tenants": "*"}, set())
    assert everywhere.tenants is None
    assert everywhere.to_json() == {"principal": GROUP, "kind": "group", "tenants": "*"}


def test_a_key_is_bound_by_its_fingerprint_and_a_fingerprint_names_a_key_only() -> None:
    assert parse_binding(KEY, {"tenants": [A]}, {A}).kind is PrincipalKind.FUNCTION_KEY
    with pytest.raises(InvalidRequest) as refused:
        parse_binding(KEY, {"kind": "user", "tenants": [A]}, {A})
    assert _pointers(refused) == ["/kind"]
    with pytest.raises(InvalidRequest) as refused:
        parse_binding(USER, {"kind": "functionKey", "tenants": [A]}, {A})
    assert _pointers(refused) == ["/kind"]


def test_every_field_at_fault_is_named() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_binding(
            USER,
            {"kind": "robot", "tenants": [A, "contoso", C], "note": 1, "principal": GROUP},
            {A},
        )
    assert _pointers(refused) == ["/kind", "/note", "/principal", "/tenants/1", "/tenants/2"]
    details = {e.pointer: e.detail for e in refused.value.errors}
    assert details["/tenants/2"] == "is not a registered tenant"
    with pytest.raises(InvalidRequest) as refused:
        parse_binding(USER, {"kind": "user", "tenants": []}, {A})
    assert _pointers(refused) == ["/tenants"]


@pytest.mark.parametrize(
    "raw", ["", "a b", "x@contoso.com", "https://evil.example", "sha256:xyz", "-lead"]
)
def test_a_principal_is_an_id_or_a_fingerprint(raw: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        valid_principal(raw)
    assert _pointers(refused) == ["/principal"]


def test_a_principal_is_kept_in_lower_case() -> None:
    assert valid_principal(USER.upper()) == USER
    assert valid_principal(KEY.upper()) == KEY


def test_a_stored_binding_is_checked_again() -> None:
    stored = Binding(USER, PrincipalKind.USER, frozenset({A})).to_json()
    assert from_stored(stored).tenants == frozenset({A})
    with pytest.raises(InvalidRequest):
        from_stored({**stored, "kind": "root"})


# -- a caller's scope --------------------------------------------------------------------------


def _user(*groups: str) -> Caller:
    return Caller("user", USER, frozenset({Role.ADMIN}), groups=frozenset(groups))


BINDINGS = [
    Binding(USER, PrincipalKind.USER, frozenset({A})),
    Binding(GROUP, PrincipalKind.GROUP, frozenset({B})),
    Binding(KEY, PrincipalKind.FUNCTION_KEY, frozenset({C})),
]


def test_the_scope_is_the_union_over_the_callers_id_and_groups() -> None:
    assert scope_for(_user(), BINDINGS) == TenantScope.only([A])
    assert scope_for(_user(GROUP), BINDINGS) == TenantScope.only([A, B])
    key_caller = from_function_key("a-key", [Role.READ])
    assert scope_for(key_caller, BINDINGS) == TenantScope.only([C])


def test_no_binding_is_bound_nowhere() -> None:
    stranger = Caller("user", "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", frozenset({Role.ADMIN}))
    scope = scope_for(stranger, BINDINGS)
    assert scope == TenantScope.only([])
    assert not scope.admits(A)


def test_an_id_binds_only_a_caller_of_its_kind() -> None:
    """An application whose client id were a user's object id is not that user."""
    app = Caller("application", USER, frozenset({Role.ADMIN}))
    assert scope_for(app, BINDINGS) == TenantScope.only([])


def test_every_tenant_from_a_star_binding_or_the_operators_setting() -> None:
    star = [*BINDINGS, Binding(GROUP, PrincipalKind.GROUP, None)]
    assert scope_for(_user(GROUP), star) == TenantScope.everywhere()
    assert scope_for(_user(), [], operators={USER}) == TenantScope.everywhere()
    assert scope_for(_user(GROUP), [], operators={GROUP}) == TenantScope.everywhere()


def test_the_groups_claim_is_read_and_nothing_else_in_it() -> None:
    caller = from_claims(
        {"tid": A, "oid": USER, "scp": "x", "groups": [GROUP.upper(), "x@y.z", 7], "roles": []}
    )
    assert caller.groups == frozenset({GROUP})
    assert "groups" not in caller.to_dict()
    assert from_claims({"tid": A, "azp": "app", "groups": "nope"}).groups == frozenset()


def test_the_operators_setting_is_checked() -> None:
    assert TenancySettings.from_env({**MULTI, "TENANCY_OPERATORS": f"{USER}, {KEY}"}).operators == {
        USER,
        KEY,
    }
    with pytest.raises(SettingsError) as refused:
        TenancySettings.from_env({**MULTI, "TENANCY_OPERATORS": "admin@contoso.com"})
    assert refused.value.setting == "TENANCY_OPERATORS"


# -- the change log ----------------------------------------------------------------------------


def test_each_change_is_a_chained_record_of_who_when_and_what() -> None:
    by = {"kind": "user", "id": USER}
    first = Binding(GROUP, PrincipalKind.GROUP, frozenset({A}))
    second = Binding(GROUP, PrincipalKind.GROUP, None)
    bound = change_record(previous_hash=None, at=T0, by=by, before=None, after=first)
    rebound = change_record(previous_hash=bound["hash"], at=T0, by=by, before=first, after=second)
    unbound = change_record(previous_hash=rebound["hash"], at=T0, by=by, before=second, after=None)
    assert [r["action"] for r in (bound, rebound, unbound)] == ["bound", "rebound", "unbound"]
    assert rebound["tenants"] == {"from": [A], "to": "*"}
    assert unbound["tenants"] == {"from": "*", "to": None}
    assert (bound["by"], bound["at"], bound["principal"]) == (by, T0.isoformat(), GROUP)
    assert tenants.verify_chain([bound, rebound, unbound]) == []
    assert tenants.verify_chain([bound, unbound]) != []


# -- through the routes, with real tokens ------------------------------------------------------


class FakeBindings:
    def __init__(self, found: list[Binding]) -> None:
        self.found = found
        self.reads = 0

    def all(self) -> list[Bound]:
        self.reads += 1
        return [Bound(b, T0.isoformat(), T0.isoformat(), {}) for b in self.found]


class FakeRegistry:
    """The registry's reading side, in memory: the routes here only read it."""

    def __init__(self, found: list[Binding]) -> None:
        self.bindings = FakeBindings(found)

    def list(self) -> list[tenants.Registered]:
        return [
            tenants.Registered(tenants.Tenant(t, f"T {t[:2]}"), "e", "", "", {}) for t in (A, B)
        ]


@pytest.fixture
def multi(entra_tokens: EntraTenant, swap: Callable[..., None]) -> Iterator[EntraTenant]:
    with app_settings(**MULTI):
        yield entra_tokens


def _tenants(user_function: Callable[[str], Any], token: str) -> Any:
    import asyncio

    req = request("GET", "tenants", key=None, headers={"authorization": f"Bearer {token}"})
    return asyncio.run(user_function("tenants_collection")(req=req))


def test_a_group_binding_reaches_its_members(multi, user_function, swap) -> None:
    registry = FakeRegistry([Binding(GROUP, PrincipalKind.GROUP, frozenset({A}))])
    swap(tenant_registry=registry)
    member = multi.mint(["DSR.Admin"], kind="user", subject_id=USER, claims={"groups": [GROUP]})
    answer = _tenants(user_function, member)
    assert answer.status_code == 200
    assert [t["tenantId"] for t in body(answer)["tenants"]] == [A]
    outsider = multi.mint(["DSR.Admin"], kind="user", subject_id=USER)
    assert body(_tenants(user_function, outsider))["tenants"] == []


def test_a_customer_tenants_token_authorises_nothing_whatever_the_bindings(
    multi, user_function, swap
) -> None:
    """A token issued by a customer tenant (not AUTH_TENANT_ID) is refused when it is judged,
    before any binding is read: even a binding to every tenant naming its subject lets it in
    nowhere. The same subject with a token of the app's own tenant is let in."""
    registry = FakeRegistry([Binding(USER, PrincipalKind.APPLICATION, None)])
    swap(tenant_registry=registry)
    foreign = multi.mint(["DSR.Admin"], subject_id=USER, claims={"tid": A})
    refused = _tenants(user_function, foreign)
    assert refused.status_code == 401
    assert registry.bindings.reads == 0
    own = _tenants(user_function, multi.mint(["DSR.Admin"], subject_id=USER))
    assert (own.status_code, body(own)["count"]) == (200, 2)


def test_single_tenancy_reads_no_binding(entra_tokens, user_function, swap) -> None:
    registry = FakeRegistry([])
    swap(tenant_registry=registry)
    answer = _tenants(user_function, entra_tokens.mint(["DSR.Admin"]))
    assert (answer.status_code, body(answer)["count"]) == (200, 2)
    assert registry.bindings.reads == 0


def test_the_per_tenant_health_is_for_admins_and_their_tenants(multi, swap) -> None:
    from intake import tenant_checks

    registry = FakeRegistry([])
    swap(tenant_registry=registry)
    checks: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Read"):
        faults = tenant_checks.deep({**MULTI}, checks, extra, request("GET", "health"))
    assert (faults, checks, extra) == ([], {"tenants": "skipped"}, {})
    assert registry.bindings.reads == 0


def test_dsrctl_fingerprints_a_key_read_from_standard_input() -> None:
    from click.testing import CliRunner

    from dsrctl.commands import cli

    done = CliRunner().invoke(cli, ["bindings", "fingerprint"], input="a-key\n")
    assert (done.exit_code, done.stdout.strip()) == (0, KEY)
    usage = CliRunner().invoke(cli, ["bindings", "set", KEY, "--tenant", A, "--all-tenants"])
    assert usage.exit_code == 2
