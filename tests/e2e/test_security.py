"""End to end, as an attacker and as a careful operator would check: roles, forged identities,
and a departed user's UPN that must not come back in any document."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.platform_auth import TENANT_ID
from devhost.tls import TlsFiles
from tests.e2e.host import TERMINAL, HostProcess, host_env

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(scope="module")
def strict_host(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: Azurite,
    e2e_identity: ManagedIdentityEndpoint,
    e2e_graph: GraphSimulator,
    tls_files: TlsFiles,
) -> Iterator[HostProcess]:
    """A host where a function key alone grants nothing: every right comes from Entra roles."""
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files)
    env["AUTH_FUNCTION_KEY_ROLES"] = "none"
    process = HostProcess(tmp_path_factory.mktemp("strict"), env).start()
    yield process
    process.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_route_refuses_a_caller_without_its_role(strict_host: HostProcess):
    reader = strict_host.token(["DSR.Read"])
    submitter = strict_host.token(["DSR.Submit"])
    request_id = _rid("ROLE")
    body = {"requestId": request_id, "user": str(uuid.uuid4())}

    refused = strict_host.post("/exports", body, headers=_bearer(reader))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "DSR.Submit" in refused.json()["detail"]

    accepted = strict_host.post("/exports", body, headers=_bearer(submitter))
    assert accepted.status_code == 202
    assert strict_host.get("/exports", headers=_bearer(submitter)).status_code == 403
    assert strict_host.get(f"/exports/{request_id}", headers=_bearer(submitter)).status_code == 403
    cancel = strict_host.post(
        f"/exports/{request_id}/cancel", {"reason": "test"}, headers=_bearer(reader)
    )
    assert cancel.status_code == 403
    assert "DSR.Manage" in cancel.json()["detail"]
    manager = strict_host.token(["DSR.Manage", "DSR.Read"])
    cancelled = strict_host.post(
        f"/exports/{request_id}/cancel", {"reason": "test"}, headers=_bearer(manager)
    )
    assert cancelled.status_code == 202


def test_the_status_document_names_the_authenticated_submitter(strict_host: HostProcess):
    app_id = str(uuid.uuid4())
    token = strict_host.token(["DSR.Submit", "DSR.Read"], id=app_id)
    request_id = _rid("WHO")
    body = {"requestId": request_id, "user": str(uuid.uuid4()), "requestedBy": "not me"}
    assert strict_host.post("/exports", body, headers=_bearer(token)).status_code == 202
    doc: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while "submittedBy" not in doc and time.monotonic() < deadline:
        doc = strict_host.get(f"/exports/{request_id}", headers=_bearer(token)).json()
        time.sleep(0.05)
    assert doc["submittedBy"] == {"kind": "application", "id": app_id, "tenantId": TENANT_ID}
    assert "requestedBy" not in doc


def test_a_forged_principal_or_a_foreign_token_gets_nothing(strict_host: HostProcess):
    claims = [{"typ": "appid", "val": "forged"}, {"typ": "roles", "val": "DSR.Submit"}]
    forged = base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode())
    body = {"requestId": _rid("FORGE"), "user": str(uuid.uuid4())}
    answer = strict_host.post("/exports", body, headers={"X-MS-CLIENT-PRINCIPAL": forged.decode()})
    assert answer.status_code == 403, "the platform drops a client's principal header"
    foreign = (
        "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9kc3ItZXhwb3J0LWxvY2FsIiwicm9sZXMiOlsiRFNSLlN1Ym1pdCJdfQ."
        "c2lnbmVkLWJ5LXNvbWVvbmUtZWxzZQ"
    )
    rejected = strict_host.post("/exports", body, headers=_bearer(foreign))
    assert rejected.status_code == 401
    assert rejected.content == b"", "the platform, not the app, refuses a bad token"


def test_a_departed_users_upn_never_comes_back_in_a_document(host: HostProcess):
    upn = f"departed.{uuid.uuid4().hex[:6]}@contoso.example"  # not in the directory
    request_id = _rid("GONE")
    assert host.post("/exports", {"requestId": request_id, "user": upn}).status_code == 202
    doc = host.wait_for(request_id, TERMINAL)
    assert doc["phase"] == "failed"
    assert doc["error"]["category"] == "user"
    listed = host.get("/exports?phase=failed").text
    assert request_id in listed
    assert upn not in json.dumps(doc)
    assert upn not in listed
    # The session-wide scan (tests/e2e/conftest.py) checks custom status, outputs and the log.
