"""End to end, as an attacker and as a careful operator would check: roles, forged identities,
and a departed user's UPN that must not come back in any document.

The strict host runs without App Service authentication in front (``--no-platform-auth``, so
``WEBSITE_AUTH_ENABLED`` is unset, as it may be on Flex Consumption) and gives function keys no
roles: every right comes from an Entra token the app validates itself, and a forged principal
header reaches the app untouched."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devhost.azurite import Azurite
from devhost.entra import TENANT_ID
from devhost.graph import GraphSimulator
from devhost.identity import ManagedIdentityEndpoint
from devhost.tls import TlsFiles
from tests.e2e.host import FUNCTION_KEY, TERMINAL, HostProcess, host_env

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
    """A host where a function key alone grants nothing and nothing stands in front of the app:
    every right comes from an Entra token the app itself validated."""
    env = host_env(azurite, e2e_identity, e2e_graph, tls_files)
    env["AUTH_FUNCTION_KEY_ROLES"] = "none"
    env.pop("WEBSITE_AUTH_ENABLED", None)
    process = HostProcess(tmp_path_factory.mktemp("strict"), env, ("--no-platform-auth",))
    process.start()
    assert process.endpoints["platformAuth"] is False
    yield process
    process.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_route_refuses_a_caller_without_its_role(
    strict_host: HostProcess, e2e_graph: GraphSimulator
):
    reader = strict_host.token(["DSR.Read"])
    submitter = strict_host.token(["DSR.Submit"])
    request_id = _rid("ROLE")
    # A person Graph knows, so the DSR is still exporting when the manager cancels it (an
    # unknown one fails at once, and the cancel would race that ending).
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"r{user[:8]}@contoso.example", user)
    body = {"requestId": request_id, "user": user}

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
    claims = [
        {"typ": "appid", "val": "forged"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT_ID},
    ] + [{"typ": "roles", "val": role} for role in ("DSR.Submit", "DSR.Read", "DSR.Manage")]
    forged = base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode())
    request_id = _rid("FORGE")
    body = {"requestId": request_id, "user": str(uuid.uuid4())}
    principal = {"X-MS-CLIENT-PRINCIPAL": forged.decode(), "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    answer = strict_host.post("/exports", body, headers=principal)
    assert answer.status_code == 403, "the header reached the app, which took no word of it"
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert strict_host.get(f"/exports/{request_id}", headers=principal).status_code == 403
    foreign = (
        "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9kc3ItZXhwb3J0LWxvY2FsIiwicm9sZXMiOlsiRFNSLlN1Ym1pdCJdfQ."
        "c2lnbmVkLWJ5LXNvbWVvbmUtZWxzZQ"
    )
    rejected = strict_host.post("/exports", body, headers=_bearer(foreign))
    assert rejected.status_code == 401
    assert rejected.headers["content-type"].startswith("application/problem+json")
    assert rejected.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    manager = strict_host.token(["DSR.Manage", "DSR.Read"])
    assert strict_host.get(f"/exports/{request_id}", headers=_bearer(manager)).status_code == 404


def _wait(host: HostProcess, request_id: str, token: str, phases: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = host.get(f"/exports/{request_id}", headers=_bearer(token))
        if answer.status_code == 200:
            doc = answer.json()
            if doc["phase"] in phases:
                return doc
        time.sleep(0.1)
    raise AssertionError(f"{request_id} never reached {phases}; last status: {doc}")


def test_a_manage_token_extends_and_erases_without_the_platform_flag(
    strict_host: HostProcess, e2e_graph: GraphSimulator
):
    submitter = strict_host.token(["DSR.Submit", "DSR.Read"])
    manager = strict_host.token(["DSR.Manage", "DSR.Read"], kind="user")
    request_id = _rid("MANAGE")
    user = str(uuid.uuid4())
    e2e_graph.add_user(f"manage-{user[:8]}@contoso.example", user)
    # Slow Graph's polls a little (real seconds), so the DSR is still running when extended.
    e2e_graph.set_faults(slow_next=3, slow_seconds=1.5, routes={"poll"})
    try:
        body = {"requestId": request_id, "user": user, "regulation": "ccpa"}
        assert strict_host.post("/exports", body, headers=_bearer(submitter)).status_code == 202
        _wait(strict_host, request_id, submitter, {"exporting"})
        ask = {"reason": "a complex request", "days": 30, "reasonCode": "complexity"}
        path = f"/exports/{request_id}/extend"
        refused = strict_host.post(path, ask, headers=_bearer(submitter))
        assert refused.status_code == 403
        assert "DSR.Manage" in refused.json()["detail"]
        extended = strict_host.post(path, ask, headers=_bearer(manager))
        assert extended.status_code == 202, extended.text
    finally:
        e2e_graph.reset_faults()
    done = _wait(strict_host, request_id, manager, TERMINAL)
    assert done["phase"] == "completed", done
    assert [e["days"] for e in done["extensions"]] == [30]
    erase = {"reason": "delivered to the data subject"}
    url = f"{strict_host.api}/exports/{request_id}/data"
    key = {"x-functions-key": FUNCTION_KEY}
    as_submitter = requests.delete(
        url, json=erase, headers={**key, **_bearer(submitter)}, timeout=30
    )
    assert as_submitter.status_code == 403
    erased = requests.delete(url, json=erase, headers={**key, **_bearer(manager)}, timeout=30)
    assert erased.status_code == 200, erased.text
    assert erased.json()["receiptId"].startswith("rcpt_")


def test_after_a_key_rotation_new_tokens_work_and_tokens_of_the_dropped_key_do_not(
    strict_host: HostProcess,
):
    old = strict_host.token(["DSR.Read"])
    assert strict_host.get("/exports", headers=_bearer(old)).status_code == 200
    command = [sys.executable, "-m", "devhost", "rotate-key", "--drop-previous"]
    rotated = subprocess.run(
        [*command, "--state", str(strict_host.state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("signing key ")
    new = strict_host.token(["DSR.Read"])
    assert strict_host.get("/exports", headers=_bearer(new)).status_code == 200, "refetched"
    stale = strict_host.get("/exports", headers=_bearer(old))
    assert stale.status_code == 401
    assert "signing key" in stale.json()["detail"]


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
