"""Two tenants, one deployment, end to end on the offline host (issue 21, TENANCY=multi): the
same ticket id sent in both, for the same UPN string that is a different person in each
directory, makes two DSRs, two exports, two containers, two evidence chains and two callbacks,
each with its own tenant's data; a consent revoked in one tenant fails its next DSR naming the
fix, while the other tenant's carries on. The stack runs in a process of its own
(dsr_tenants_host.py), on a fast clock: seconds."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.entra import CUSTOMER_TENANTS
from devhost.graph import DEMO_DIRECTORY
from devhost.graph.tenancy import customer_directory
from devhost.stack import REPO_ROOT
from dsr_export.domain import dsr_keys
from tests.e2e.host import user_env
from tests.secret_scan import SECRET

pytestmark = pytest.mark.azurite

A, B, _ = CUSTOMER_TENANTS
TICKET = "RITM0012345"


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("dsr-tenants")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.devhost.dsr_tenants_host",
            str(where / "state"),
            str(where / "seen.json"),
        ],
        cwd=REPO_ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found: dict[str, Any] = json.loads((where / "seen.json").read_text())
    return found


def test_the_same_ticket_in_two_tenants_is_two_dsrs_with_their_own_data(seen) -> None:
    upn = seen["upn"]
    mine = {A: seen["tenants"][A], B: seen["tenants"][B]}
    for tenant, other in ((A, B), (B, A)):
        dsr = dsr_keys.dsr_id(tenant, TICKET)
        assert mine[tenant]["dsr"] == dsr
        status = mine[tenant]["status"]
        assert (status["phase"], status["tenantId"], status["requestId"]) == (
            "completed",
            tenant,
            dsr,
        )
        assert status["container"] != mine[other]["status"]["container"]
        evidence = mine[tenant]["evidence"]
        assert evidence["verification"]["ok"], evidence["verification"]
        assert {r["requestId"] for r in evidence["records"]} == {dsr}
        submitted = [r["data"] for r in evidence["records"] if r["kind"] == "submitted"]
        # The UPN is this tenant's person: its own directory's object id, never the other's.
        assert [s["userObjectId"] for s in submitted] == [customer_directory(tenant, [upn])[upn]]
        assert mine[tenant]["crossRead"] == dsr_keys.dsr_id(other, TICKET)
    assert seen["evidenceBlobs"] == sorted(  # the registry's change log beside them
        ["registry/tenants.jsonl"]
        + [
            f"t-{tenant}/{dsr_keys.tenant_key(tenant)}~{ticket}.jsonl"
            for tenant in (A, B)
            for ticket in (TICKET, "RITM0012346")
        ]
    )
    for tenant in (A, B):
        key = dsr_keys.tenant_key(tenant).lower()
        assert any(name.startswith(f"dsr-{key}-ritm0012345-") for name in seen["containers"])


def test_each_tenants_callbacks_carry_its_own_dsr(seen) -> None:
    told = {
        (c["type"], c["data"]["requestId"], c["data"].get("tenantId")) for c in seen["callbacks"]
    }
    for tenant in (A, B):
        dsr = dsr_keys.dsr_id(tenant, TICKET)
        assert {("dsr.accepted", dsr, tenant), ("dsr.completed", dsr, tenant)} <= told
    assert not any(dsr.startswith(dsr_keys.tenant_key(B)) and t == A for _, dsr, t in told)
    # Each tenant's callbacks are signed with its own secret: B's from its Key Vault secret.
    signers = {(c["data"].get("tenantId"), c["signedWith"]) for c in seen["callbacks"]}
    assert signers == {(A, "A"), (B, "B")}


def test_a_revoked_consent_fails_that_tenants_new_dsr_and_no_other(seen) -> None:
    failed, carried_on = seen["afterRevoke"][A], seen["afterRevoke"][B]
    assert carried_on["phase"] == "completed"
    assert failed["phase"] == "failed"
    assert failed["error"]["code"] == "TenantConsentMissing"
    assert f"/api/tenants/{A}/consent-link" in failed["error"]["hint"]
    finished = [r for r in seen["afterRevokeEvidence"]["records"] if r["kind"] == "finished"]
    assert [r["data"].get("errorCode") for r in finished] == ["TenantConsentMissing"]
    told = {(c["type"], c["data"]["requestId"]) for c in seen["callbacks"]}
    assert ("dsr.failed", dsr_keys.dsr_id(A, "RITM0012346")) in told
    assert ("dsr.completed", dsr_keys.dsr_id(B, "RITM0012346")) in told


def test_a_key_bound_to_one_tenant_sees_nothing_of_the_other(seen) -> None:
    bound = seen["bound"]
    assert bound["own"]["requestId"] == dsr_keys.dsr_id(B, TICKET), "its one tenant implied"
    status, theirs = bound["theirs"]
    _, nothing = bound["nothing"]
    assert status == 404
    assert theirs == {**nothing, "detail": nothing["detail"].replace("NO-SUCH-DSR", TICKET)}
    assert bound["evidence"] == 404
    assert bound["list"] == [dsr_keys.dsr_id(B, TICKET)]
    assert bound["submitForA"] == 404


def _places(seen: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Everything of both tenants a ticket, an operator or an auditor reads, as (where, text):
    each tenant's status documents and evidence chains, both lists (the operator's per tenant
    and the bound key's), every callback, and every log line of the host's process."""
    for tenant in (A, B):
        mine = seen["tenants"][tenant]
        yield f"status of {tenant}", json.dumps(mine["status"])
        yield f"evidence of {tenant}", json.dumps(mine["evidence"])
        yield f"status after revoke of {tenant}", json.dumps(seen["afterRevoke"][tenant])
        yield f"list of {tenant}", json.dumps(seen["lists"][tenant])
    yield "evidence after revoke of A", json.dumps(seen["afterRevokeEvidence"])
    yield "evidence after revoke of B", json.dumps(seen["afterRevokeEvidenceB"])
    yield "what the key bound to B saw", json.dumps(seen["bound"])
    for i, callback in enumerate(seen["callbacks"]):
        yield f"callback {i}", json.dumps(callback)
    for i, line in enumerate(seen["logs"]):
        yield f"log line {i}", line


def leaks(seen: dict[str, Any]) -> list[str]:
    """Where a UPN sent in either tenant (every UPN of the demo directory: each names a person
    in both) or a SAS signature or bearer token shows up in what :func:`_places` yields."""
    upns = sorted({seen["upn"].lower(), *(upn.lower() for upn in DEMO_DIRECTORY)})
    found = []
    for where, text in _places(seen):
        found += [f"{where}: {upn}" for upn in upns if upn in text.lower()]
        if SECRET.search(text):
            found.append(f"{where}: a SAS signature or bearer token")
    return found


def test_no_upn_and_no_secret_in_anything_of_either_tenant(seen) -> None:
    assert len(seen["logs"]) > 50, "the host's log records were captured"
    assert {c["data"].get("tenantId") for c in seen["callbacks"]} == {A, B}
    assert leaks(seen) == []


@pytest.mark.parametrize(
    "plant",
    [
        lambda s, upn: s["tenants"][A]["status"].update(note=upn),
        lambda s, upn: s["tenants"][B]["evidence"]["records"][-1]["data"].update(x=upn),
        lambda s, upn: s["afterRevokeEvidenceB"]["records"][0]["data"].update(x=upn),
        lambda s, upn: s["lists"][B]["items"][0].update(note=upn),
        lambda s, upn: s["callbacks"][-1]["data"].update(note=upn),
        lambda s, upn: s["logs"].append(f"dsr_export: submitted user={upn.upper()}"),
        lambda s, _: s["logs"].append("dsr_export: url=https://x/c?sv=1&sig=abcdEFGH1234%3D"),
        lambda s, _: s["logs"].append("azure: Authorization: Bearer eyJhbGciOi.x.y"),
    ],
    ids=["status A", "evidence B", "evidence B 2", "list B", "callback", "log", "sas", "token"],
)
def test_a_planted_leak_fails_the_scan(seen, plant) -> None:
    planted = copy.deepcopy(seen)
    plant(planted, seen["upn"])
    assert leaks(planted), "the scan finds what was planted"
