"""The Graph simulator per tenant: a token's ``tid`` reaches that tenant's directory, quotas and
operations only; a token of no customer tenant is the home tenant's, as before tenants."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from azure.storage.blob import (
    AccessPolicy,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from devhost.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devhost.graph import GRAPH_RESOURCE, GraphSimulator
from devhost.tls import TlsFiles

A = "00000000-0000-4000-8000-0000000000c1"
B = "00000000-0000-4000-8000-0000000000c2"
UPN = "adele.vance@contoso.example"
OID_A = "6e7b768e-07e2-4810-8459-0000000000a1"
OID_B = "6e7b768e-07e2-4810-8459-0000000000b1"


def token(tenant: str | None) -> str:
    now = int(time.time())
    claims = {
        "aud": GRAPH_RESOURCE,
        "iat": now,
        "nbf": now - 60,
        "exp": now + 3600,
        "roles": ["User.Export.All", "User.Read.All"],
    }
    if tenant:
        claims["tid"] = tenant
    return jwt.encode(claims, "test-key-of-at-least-32-bytes-long", algorithm="HS256")


@pytest.fixture
def sim(graph_sim: GraphSimulator) -> GraphSimulator:
    graph_sim.add_tenant(A, {UPN: OID_A})
    graph_sim.add_tenant(B, {UPN: OID_B})
    return graph_sim


def call(sim: GraphSimulator, ca: str, method: str, path: str, tenant: str | None, **kw):
    return requests.request(
        method,
        f"{sim.base_url}{path}",
        headers={"Authorization": f"Bearer {token(tenant)}"},
        verify=ca,
        timeout=30,
        **kw,
    )


@pytest.fixture
def container(azurite: Azurite, tls_files: TlsFiles) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=tls_files.ca_bundle
    )
    return service.create_container(f"dsr-{uuid.uuid4().hex[:12]}")


def sas_url(container: ContainerClient) -> str:
    now = datetime.now(UTC)
    policy = AccessPolicy(
        ContainerSasPermissions.from_string("acw"),
        expiry=now + timedelta(days=60),
        start=now - timedelta(minutes=15),
    )
    container.set_container_access_policy({"dsr-export": policy})
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container.container_name,
        account_key=ACCOUNT_KEY,
        policy_id="dsr-export",
        protocol="https",
    )
    return f"{container.url}?{sas}"


def test_the_same_upn_is_a_different_person_in_each_tenant(
    sim: GraphSimulator, tls_files: TlsFiles
) -> None:
    ca = tls_files.ca_bundle
    ids = {t: call(sim, ca, "GET", f"/v1.0/users/{UPN}", t).json()["id"] for t in (A, B)}
    assert ids == {A: OID_A, B: OID_B}
    assert call(sim, ca, "GET", f"/v1.0/users/{OID_A}", B).status_code == 404
    # The home tenant (no customer tid) keeps the simulator's own directory.
    assert call(sim, ca, "GET", f"/v1.0/users/{UPN}", None).json()["id"] not in (OID_A, OID_B)


@pytest.mark.azurite
def test_an_operation_and_its_quota_belong_to_the_tenant_that_submitted_it(
    sim: GraphSimulator, tls_files: TlsFiles, container: ContainerClient
) -> None:
    ca = tls_files.ca_bundle
    submitted = call(
        sim,
        ca,
        "POST",
        f"/beta/users/{OID_A}/exportPersonalData",
        A,
        json={"storageLocation": sas_url(container)},
    )
    assert submitted.status_code == 202, submitted.text
    op = submitted.headers["Location"].rsplit("/", 1)[1]
    assert call(sim, ca, "GET", f"/beta/dataPolicyOperations/{op}", A).status_code == 200
    for other in (B, None):
        refused = call(sim, ca, "GET", f"/beta/dataPolicyOperations/{op}", other)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "OperationNotFound"
    # B cannot export A's user either: not in B's directory.
    assert (
        call(sim, ca, "POST", f"/beta/users/{OID_A}/exportPersonalData", B, json={}).status_code
        == 404
    )
    usage_a, usage_b = sim.quota_usage(A), sim.quota_usage(B)
    assert (usage_a["submits"], usage_a["polls"]) == (1, 1)
    assert (usage_b["submits"], usage_b["polls"]) == (1, 1)
    assert (sim.quota_usage()["submits"], sim.quota_usage()["polls"]) == (0, 1)
