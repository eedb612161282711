"""Callers and roles from a validated token's claims; the offline platform's second wall."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devhost.entra import EntraTenant
from devhost.platform_auth import InvalidToken, PlatformAuth, strip_principal
from devhost.tls import TlsFiles
from dsr_export.domain.callers import (
    NotAuthenticated,
    Role,
    from_claims,
    from_function_key,
    parse_roles,
)


def test_an_application_is_recorded_by_its_app_id_with_its_roles():
    for client in ("appid", "azp"):  # v1.0 and v2.0 tokens
        caller = from_claims(
            {client: "app-1", "oid": "sp", "tid": "t", "roles": ["DSR.Submit", "Not.Ours"]}
        )
        assert (caller.kind, caller.id, caller.tenant_id) == ("application", "app-1", "t")
        assert caller.roles == {Role.SUBMIT}
        assert caller.may(Role.SUBMIT)
        assert not caller.may(Role.MANAGE)


def test_a_person_is_recorded_by_object_id_never_by_name():
    caller = from_claims({"oid": "o1", "scp": "x", "name": "Adele Vance", "azp": "portal"})
    assert caller.to_dict() == {"kind": "user", "id": "o1"}
    assert "Adele" not in json.dumps(caller.to_dict())


@pytest.mark.parametrize(
    "claims",
    [{}, {"scp": "x", "azp": "portal"}, {"oid": "o"}, {"appid": "a", "roles": "DSR.Manage"}],
)
def test_claims_that_name_no_caller_are_not_an_identity(claims):
    with pytest.raises(NotAuthenticated):
        from_claims(claims)


def test_a_function_key_caller_is_known_by_a_fingerprint_not_the_key():
    caller = from_function_key("s3cr3t-key", {Role.SUBMIT})
    assert caller.kind == "functionKey"
    assert caller.id.startswith("sha256:")
    assert "s3cr3t" not in json.dumps(caller.to_dict())
    assert from_function_key("s3cr3t-key", ()).id == caller.id  # stable: an admin can match it


def test_roles_settings_name_the_unknown_role():
    assert parse_roles("DSR.Submit, DSR.Read") == {Role.SUBMIT, Role.READ}
    with pytest.raises(ValueError, match=r"DSR\.Delete"):
        parse_roles("DSR.Submit,DSR.Delete")


@pytest.fixture(scope="module")
def tenants(tls_files: TlsFiles) -> Iterator[tuple[EntraTenant, EntraTenant]]:
    with EntraTenant(tls_files) as one, EntraTenant(tls_files) as other:
        yield one, other


def test_the_offline_platform_vouches_for_its_tenants_tokens_and_nothing_else(tenants):
    tenant, other = tenants
    platform = PlatformAuth(tenant)
    token = tenant.mint(["DSR.Read"], kind="user", subject_id="oid-7")
    headers = platform.principal_headers(f"Bearer {token}")
    assert headers["x-ms-client-principal-id"] == "oid-7"
    with pytest.raises(InvalidToken):
        platform.principal_headers(f"Bearer {other.mint(['DSR.Read'])}")  # another tenant's key
    with pytest.raises(InvalidToken):
        platform.principal_headers("Basic abc")
    forged = {"X-MS-CLIENT-PRINCIPAL": "forged", "x-ms-client-principal-id": "x", "a": "b"}
    assert strip_principal(forged) == {"a": "b"}


@pytest.mark.parametrize("subject", ["ada@contoso.example", "https://evil", "a b", " "])
def test_the_offline_issuer_refuses_to_mint_an_id_no_entra_tenant_issues(tenants, subject):
    """I-6: a minted id carrying ``@`` made a submit answer 503 (the evidence refused it)."""
    tenant, _ = tenants
    for kind in ("application", "user"):
        with pytest.raises(ValueError, match="id must be"):
            tenant.mint(["DSR.Submit"], kind=kind, subject_id=subject)


@pytest.mark.parametrize(
    "claims",
    [
        {"appid": "ada@contoso.example"},
        {"oid": "ada@contoso.example", "scp": "x"},
        {"azp": "app-1", "tid": "https://x"},
    ],
)
def test_claims_whose_id_is_an_address_are_not_a_caller(claims):
    with pytest.raises(NotAuthenticated, match="not an Entra"):
        from_claims(claims)
