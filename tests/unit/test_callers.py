"""Callers and roles from the platform's principal header, as App Service writes it."""

from __future__ import annotations

import base64
import json

import pytest

from devhost.platform_auth import InvalidToken, PlatformAuth, strip_principal
from dsr_export.domain.callers import (
    NotAuthenticated,
    Role,
    from_function_key,
    from_principal,
    parse_roles,
)


def _header(claims: list[dict[str, str]], role_typ: str = "roles") -> str:
    principal = {"auth_typ": "aad", "claims": claims, "role_typ": role_typ}
    return base64.b64encode(json.dumps(principal).encode()).decode()


def test_an_application_is_recorded_by_its_app_id_with_its_roles():
    caller = from_principal(
        _header(
            [
                {"typ": "appid", "val": "app-1"},
                {
                    "typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    "val": "sp",
                },
                {"typ": "roles", "val": "DSR.Submit"},
                {"typ": "roles", "val": "Not.Ours"},
            ]
        )
    )
    assert (caller.kind, caller.id) == ("application", "app-1")
    assert caller.roles == {Role.SUBMIT}
    assert caller.may(Role.SUBMIT)
    assert not caller.may(Role.MANAGE)


def test_a_person_is_recorded_by_object_id_never_by_name():
    caller = from_principal(
        _header(
            [
                {
                    "typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    "val": "o1",
                },
                {"typ": "http://schemas.microsoft.com/identity/claims/scope", "val": "x"},
                {"typ": "name", "val": "Adele Vance"},
                {"typ": "appid", "val": "portal"},
            ]
        )
    )
    assert caller.to_dict() == {"kind": "user", "id": "o1"}
    assert "Adele" not in json.dumps(caller.to_dict())


@pytest.mark.parametrize("header", ["", "not base64!", base64.b64encode(b"[1]").decode()])
def test_an_unreadable_principal_is_not_an_identity(header: str):
    with pytest.raises(NotAuthenticated):
        from_principal(header)


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


def test_the_offline_platform_turns_its_own_tokens_into_principals_and_nothing_else():
    platform, other = PlatformAuth(), PlatformAuth()
    token = platform.mint(["DSR.Read"], kind="user", subject_id="oid-7")
    headers = platform.principal_headers(f"Bearer {token}")
    caller = from_principal(headers["x-ms-client-principal"])
    assert (caller.kind, caller.id, caller.roles) == ("user", "oid-7", frozenset({Role.READ}))
    with pytest.raises(InvalidToken):
        other.principal_headers(f"Bearer {token}")  # another tenant's signature
    with pytest.raises(InvalidToken):
        platform.principal_headers("Basic abc")
    forged = {"X-MS-CLIENT-PRINCIPAL": "forged", "x-ms-client-principal-id": "x", "a": "b"}
    assert strip_principal(forged) == {"a": "b"}


@pytest.mark.parametrize("subject", ["ada@contoso.example", "https://evil", "a b", ""])
def test_the_offline_issuer_refuses_to_mint_an_id_no_entra_tenant_issues(subject: str):
    """I-6: a minted id carrying ``@`` made a submit answer 503 (the evidence refused it)."""
    platform = PlatformAuth()
    for kind in ("application", "user"):
        with pytest.raises(ValueError, match="id must be"):
            platform.mint(["DSR.Submit"], kind=kind, subject_id=subject or " ")


@pytest.mark.parametrize(
    "claims",
    [
        [{"typ": "appid", "val": "ada@contoso.example"}],
        [{"typ": "oid", "val": "ada@contoso.example"}],
        [{"typ": "appid", "val": "app-1"}, {"typ": "tid", "val": "https://x"}],
    ],
)
def test_a_principal_whose_id_is_an_address_is_not_a_caller(claims: list[dict[str, str]]):
    header = base64.b64encode(json.dumps({"claims": claims}).encode()).decode()
    with pytest.raises(NotAuthenticated, match="not an Entra"):
        from_principal(header)
