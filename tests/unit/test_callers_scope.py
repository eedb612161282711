"""A caller's tenant scope (issue 21): where it may act, beside what its roles let it do."""

from __future__ import annotations

from dsr_export.domain.callers import Caller, Role, TenantScope

A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"


def test_an_unbound_caller_reaches_every_tenant() -> None:
    caller = Caller("application", "app", frozenset({Role.READ}))
    assert caller.reaches(A)
    assert caller.reaches(B)
    assert caller.scope.sole is None


def test_a_caller_bound_to_one_tenant_reaches_it_alone_in_any_case() -> None:
    caller = Caller("application", "app", frozenset({Role.READ}), scope=TenantScope.only([A]))
    assert caller.reaches(A)
    assert caller.reaches(A.upper())
    assert not caller.reaches(B)
    assert caller.scope.sole == A


def test_a_caller_bound_nowhere_reaches_nothing_and_implies_no_tenant() -> None:
    scope = TenantScope.only([])
    assert not scope.admits(A)
    assert scope.sole is None
    assert TenantScope.only([A, B]).sole is None
