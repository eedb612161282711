"""TENANCY=multi offline: the production credential gets per-tenant Graph tokens from the local
Entra by the real protocol (client credentials with the managed identity's token as a federated
client assertion), only where the tenant consented; and the Graph simulator keeps each tenant's
directory, quotas and operations apart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from devhost.entra import CUSTOMER_TENANTS, MULTI_TENANT_CLIENT_ID, EntraTenant
from devhost.entra_federation import JWT_BEARER
from devhost.graph import GraphSimulator
from devhost.graph.tenancy import customer_directory
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from dsr_export.adapters.credentials import (
    TOKEN_EXCHANGE_SCOPE,
    TenantCredentials,
    TenantNotServed,
    app_identity,
)
from dsr_export.settings import TenancySettings

CONSENTED, OTHER, NEVER = CUSTOMER_TENANTS
GRAPH = "https://graph.microsoft.com"


@dataclass
class Federation:
    entra: EntraTenant
    identity: ManagedIdentityEndpoint
    credentials: TenantCredentials
    ca_bundle: str


@pytest.fixture
def federation(
    tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Federation]:
    """The local Entra with the multi-tenant app trusting a fresh managed identity, two
    customer tenants consented, and the app's own credentials (TENANCY=multi) pointed there
    the way the offline host points them: AZURE_AUTHORITY_HOST and the identity's variables."""
    with (
        EntraTenant(tls_files, state_file=tmp_path / "keys.json") as entra,
        ManagedIdentityEndpoint() as identity,
    ):
        entra.register_multi_tenant_app(
            home_tenant=identity.tenant_id, identity_object_id=identity.object_id
        )
        identity.federate(entra.sign, entra.issuer_of(identity.tenant_id))
        entra.consent(CONSENTED)
        entra.consent(OTHER)
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in identity.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra.authority)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_bundle))
        tenancy = TenancySettings.from_env(
            {"TENANCY": "multi", "MULTI_TENANT_CLIENT_ID": MULTI_TENANT_CLIENT_ID}
        )
        yield Federation(
            entra, identity, TenantCredentials(tenancy, app_identity()), str(tls_files.ca_bundle)
        )


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_a_consented_tenant_gives_the_app_a_graph_token_with_its_permissions(
    federation: Federation,
) -> None:
    token = federation.credentials.for_tenant(CONSENTED).get_token(f"{GRAPH}/.default")

    got = claims(token.token)
    assert (got["tid"], got["appid"], got["aud"]) == (CONSENTED, MULTI_TENANT_CLIENT_ID, GRAPH)
    assert sorted(got["roles"]) == ["User.Export.All", "User.Read.All"]
    assert token.expires_on > time.time() + 3000
    # Signed by the tenant's published key, as Entra signs it.
    key = federation.entra.public_key(jwt.get_unverified_header(token.token)["kid"])
    assert key is not None
    assert jwt.decode(token.token, key, algorithms=["RS256"], audience=GRAPH)["tid"] == CONSENTED


def test_each_tenant_gets_its_own_credential_built_once(federation: Federation) -> None:
    credentials = federation.credentials
    first = credentials.for_tenant(CONSENTED)
    assert credentials.for_tenant(CONSENTED.upper()) is first
    assert credentials.for_tenant(OTHER) is not first
    a = first.get_token(f"{GRAPH}/.default")
    b = credentials.for_tenant(OTHER).get_token(f"{GRAPH}/.default")
    assert (claims(a.token)["tid"], claims(b.token)["tid"]) == (CONSENTED, OTHER)
    issued = federation.entra.federation.issued
    assert first.get_token(f"{GRAPH}/.default").token == a.token  # cached, not asked again
    assert federation.entra.federation.issued == issued


def test_a_tenant_that_never_consented_gets_no_token(federation: Federation) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        federation.credentials.for_tenant(NEVER).get_token(f"{GRAPH}/.default")


def test_a_revoked_consent_stops_new_tokens(federation: Federation) -> None:
    federation.credentials.for_tenant(OTHER).get_token(f"{GRAPH}/.default")
    federation.entra.revoke(OTHER)
    federation.credentials.forget(OTHER)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        federation.credentials.for_tenant(OTHER).get_token(f"{GRAPH}/.default")


def test_the_assertion_is_the_identitys_exchange_token(federation: Federation) -> None:
    assertion = federation.credentials.assertion()
    got = claims(assertion)
    identity = federation.identity
    assert got["aud"] == TOKEN_EXCHANGE_SCOPE.removesuffix("/.default")
    assert got["iss"] == federation.entra.issuer_of(identity.tenant_id)
    assert got["sub"] == identity.object_id
    assert jwt.get_unverified_header(assertion)["alg"] == "RS256"


def post_token(federation: Federation, tenant: str, assertion: str) -> requests.Response:
    return requests.post(
        f"{federation.entra.authority}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": MULTI_TENANT_CLIENT_ID,
            "scope": f"{GRAPH}/.default",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
        },
        verify=federation.ca_bundle,
        timeout=10,
    )


def test_entra_checks_issuer_subject_audience_signature_and_lifetime(
    federation: Federation,
) -> None:
    good = claims(federation.credentials.assertion())
    entra = federation.entra
    now = int(time.time())
    cases = {
        "70021": entra.sign({**good, "sub": "someone-else"}),
        "70021 ": entra.sign({**good, "iss": entra.issuer_of(CONSENTED)}),
        " 70021": entra.sign({**good, "aud": "api://another-audience"}),
        "700024": entra.sign({**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "50013": jwt.encode(good, "not-the-issuer-key-but-long-enough-for-hs256", "HS256"),
    }
    for code, assertion in cases.items():
        answer = post_token(federation, CONSENTED, assertion)
        assert answer.status_code in (400, 401), code
        assert answer.json()["error_codes"] == [int(code)], code
    assert post_token(federation, CONSENTED, entra.sign(good)).status_code == 200
    unknown = post_token(federation, "00000000-0000-4000-8000-0000000000ff", entra.sign(good))
    assert unknown.json()["error_codes"] == [90002]
    plain = requests.post(
        f"{entra.authority}/{CONSENTED}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": MULTI_TENANT_CLIENT_ID},
        verify=federation.ca_bundle,
        timeout=10,
    )
    assert plain.json()["error_codes"] == [7000218]


def test_single_tenancy_is_the_managed_identity_and_nothing_else() -> None:
    identity = object()
    single = TenantCredentials(TenancySettings.from_env({}), identity)  # type: ignore[arg-type]
    assert single.for_tenant(None) is identity
    with pytest.raises(TenantNotServed):
        single.for_tenant(CONSENTED)


# --- the Graph simulator, per tenant ---------------------------------------------------------


def graph_token(federation: Federation, tenant: str, graph: GraphSimulator) -> str:
    credential = federation.credentials.for_tenant(tenant)
    return str(credential.get_token(f"{graph.base_url}/.default").token)


def test_graph_serves_each_tenant_its_own_directory(
    federation: Federation, graph_sim: GraphSimulator
) -> None:
    upn = "adele.vance@contoso.example"
    for tenant in (CONSENTED, OTHER):
        graph_sim.add_tenant(tenant, customer_directory(tenant, [upn]))
    graph_sim.add_user("only.in.a@contoso.example", tenant=CONSENTED)

    def resolve(tenant: str, user: str) -> requests.Response:
        return requests.get(
            f"{graph_sim.base_url}/v1.0/users/{user}",
            headers={"Authorization": f"Bearer {graph_token(federation, tenant, graph_sim)}"},
            verify=federation.ca_bundle,
            timeout=10,
        )

    a, b = resolve(CONSENTED, upn).json()["id"], resolve(OTHER, upn).json()["id"]
    assert a != b
    assert a == customer_directory(CONSENTED, [upn])[upn]
    assert resolve(CONSENTED, "only.in.a@contoso.example").status_code == 200
    assert resolve(OTHER, "only.in.a@contoso.example").status_code == 404
    assert resolve(OTHER, a).status_code == 404  # A's object id is nobody in B
    assert graph_sim.tenants() == sorted([CONSENTED, OTHER])
