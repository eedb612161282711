"""The local managed-identity endpoint works with the unmodified azure-identity credentials, and
the local Entra tenant publishes its OpenID metadata and signing keys as Entra does."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from devhost.azurite import ACCOUNT_NAME, Azurite
from devhost.entra import EntraTenant
from devhost.identity import GRAPH_RESOURCE, STORAGE_RESOURCE, ManagedIdentityEndpoint
from devhost.tls import TlsFiles


def claims_of(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_default_azure_credential_gets_a_graph_token(
    identity: ManagedIdentityEndpoint, identity_env: dict[str, str]
) -> None:
    token = DefaultAzureCredential().get_token(f"{GRAPH_RESOURCE}/.default")

    claims = claims_of(token.token)
    assert claims["aud"] == GRAPH_RESOURCE
    assert claims["iss"] == f"https://sts.windows.net/{identity.tenant_id}/"
    assert (claims["tid"], claims["oid"], claims["appid"]) == (
        identity.tenant_id,
        identity.object_id,
        identity.client_id,
    )
    assert claims["roles"] == ["User.Export.All", "User.Read.All"]
    now = time.time()
    assert isinstance(claims["nbf"], int) and claims["nbf"] <= now  # noqa: PT018
    assert token.expires_on > now + 3600


def test_tokens_are_cached_by_the_credential(
    identity: ManagedIdentityEndpoint, identity_env: dict[str, str]
) -> None:
    credential = ManagedIdentityCredential()
    before = identity.issued_count
    first = credential.get_token(f"{STORAGE_RESOURCE}/.default")
    second = credential.get_token(f"{STORAGE_RESOURCE}/.default")
    assert first.token == second.token
    assert identity.issued_count == before + 1
    assert "roles" not in claims_of(first.token)  # RBAC is not carried in storage tokens


def test_user_assigned_selection_by_client_id(
    identity: ManagedIdentityEndpoint, identity_env: dict[str, str]
) -> None:
    token = ManagedIdentityCredential(client_id=identity.client_id).get_token(
        f"{GRAPH_RESOURCE}/.default"
    )
    assert claims_of(token.token)["appid"] == identity.client_id


def test_protocol_errors_look_like_app_service(identity: ManagedIdentityEndpoint) -> None:
    env = identity.env()
    url = env["IDENTITY_ENDPOINT"]
    good = {"api-version": "2019-08-01", "resource": GRAPH_RESOURCE}
    header = {"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}

    def get(params: dict[str, str], headers: dict[str, str]) -> requests.Response:
        return requests.get(url, params=params, headers=headers, timeout=10)

    assert get(good, {}).status_code == 400
    assert get(good, {"X-IDENTITY-HEADER": "wrong"}).status_code == 401
    assert get({"api-version": "2019-08-01"}, header).status_code == 400
    assert get({**good, "api-version": "2017-09-01"}, header).status_code == 400
    unknown = get({**good, "client_id": "11111111-1111-1111-1111-111111111111"}, header)
    assert unknown.status_code == 400
    assert set(unknown.json()) == {"statusCode", "message", "correlationId"}

    answer = get(good, header)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["resource"] == GRAPH_RESOURCE
    assert body["token_type"] == "Bearer"
    assert int(body["expires_on"]) > time.time()


def test_custom_roles_per_resource() -> None:
    with ManagedIdentityEndpoint(roles={"api://other/": ["Things.Read"]}) as endpoint:
        env = endpoint.env()
        body = requests.get(
            env["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": "api://other"},
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
            timeout=10,
        ).json()
    assert claims_of(body["access_token"])["roles"] == ["Things.Read"]


@pytest.mark.azurite
def test_storage_token_is_accepted_by_azurite(
    azurite: Azurite, tls_files: TlsFiles, identity_env: dict[str, str]
) -> None:
    service = BlobServiceClient(
        azurite.blob_endpoint,
        credential=ManagedIdentityCredential(),
        connection_verify=tls_files.ca_bundle,
    )
    container = service.create_container("made-by-managed-identity")

    now = datetime.now(UTC)
    key = service.get_user_delegation_key(now - timedelta(minutes=15), now + timedelta(hours=1))
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container.container_name,
        user_delegation_key=key,
        permission=ContainerSasPermissions(add=True, create=True, write=True),
        expiry=now + timedelta(hours=1),
        start=now - timedelta(minutes=15),
        protocol="https",
    )
    through_sas = ContainerClient.from_container_url(
        f"{container.url}?{sas}", connection_verify=tls_files.ca_bundle
    )
    through_sas.upload_blob("Exchange/Mailbox.json", b"{}")
    assert [b.name for b in container.list_blobs()] == ["Exchange/Mailbox.json"]


# --- the local Entra tenant: OpenID metadata and keys as Entra publishes them ----------------


def test_the_tenant_publishes_its_openid_configuration_and_keys_over_tls(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    with EntraTenant(tls_files, state_file=tmp_path / "keys.json") as tenant:
        base = f"{tenant.authority}/{tenant.tenant_id}"

        def get(path: str) -> requests.Response:
            return requests.get(f"{base}{path}", verify=tls_files.ca_bundle, timeout=10)

        v2 = get("/v2.0/.well-known/openid-configuration").json()
        assert v2["issuer"] == f"{tenant.authority}/{tenant.tenant_id}/v2.0"
        assert v2["jwks_uri"] == f"{base}/discovery/v2.0/keys"
        assert v2["id_token_signing_alg_values_supported"] == ["RS256"]
        v1 = get("/.well-known/openid-configuration").json()
        assert v1["issuer"] == f"https://sts.windows.net/{tenant.tenant_id}/"
        assert v1["jwks_uri"] == f"{base}/discovery/keys"
        [key] = get("/discovery/v2.0/keys").json()["keys"]
        assert (key["kty"], key["use"], key["kid"]) == ("RSA", "sig", tenant.signing_kid)
        assert get("/discovery/keys").json() == get("/discovery/v2.0/keys").json()
        other = requests.get(
            f"{tenant.authority}/another-tenant/v2.0/.well-known/openid-configuration",
            verify=tls_files.ca_bundle,
            timeout=10,
        )
        assert other.status_code == 404

        token = tenant.mint(["DSR.Read"], subject_id="app-1")
        assert jwt.get_unverified_header(token) == {
            "alg": "RS256",
            "typ": "JWT",
            "kid": tenant.signing_kid,
        }
        verified = jwt.decode(
            token,
            jwt.PyJWK(key).key,
            algorithms=["RS256"],
            audience=tenant.client_id,
            issuer=v2["issuer"],
        )
        assert (verified["azp"], verified["tid"], verified["ver"]) == (
            "app-1",
            tenant.tenant_id,
            "2.0",
        )


def test_rotation_drops_or_keeps_the_old_key_and_a_restart_keeps_the_keys(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    state = tmp_path / "keys.json"
    with EntraTenant(tls_files, state_file=state) as tenant:
        first = tenant.signing_kid
        second = tenant.rotate(keep_previous=True)
        assert [k["kid"] for k in tenant.jwks()["keys"]] == [second, first]
        assert jwt.get_unverified_header(tenant.mint([]))["kid"] == second
        third = tenant.rotate(keep_previous=False)
        assert [k["kid"] for k in tenant.jwks()["keys"]] == [third]
        assert tenant.public_key(first) is None
    assert state.stat().st_mode & 0o077 == 0, "private keys are owner-only"
    with EntraTenant(tls_files, state_file=state) as restarted:
        assert restarted.signing_kid == third
