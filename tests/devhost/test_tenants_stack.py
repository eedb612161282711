"""TENANCY=multi on the offline host, end to end: ``dsrctl tenants`` against the real app, which
gets each tenant's Graph token from the local Entra through its federated credential; a tenant
whose administrator has not consented fails the deep health check with Entra's own code, and
passes once consent is given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devhost.entra import CUSTOMER_TENANTS, MULTI_TENANT_CLIENT_ID
from devhost.stack import REPO_ROOT
from tests.e2e.host import user_env

pytestmark = pytest.mark.azurite

CONSENTED, LEAVER, NEVER = CUSTOMER_TENANTS


def run_host(state: Path, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.devhost.tenants_host", str(state), str(out)],
        cwd=REPO_ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


def test_an_operator_onboards_tenants_and_the_health_follows_consent(tmp_path: Path) -> None:
    seen = run_host(tmp_path / "state", tmp_path / "seen.json")

    assert seen["clientId"] == MULTI_TENANT_CLIENT_ID
    assert seen["add"]["code"] == 0
    assert seen["add"]["out"]["tenantId"] == CONSENTED
    assert [t["tenantId"] for t in seen["list"]["out"]["tenants"]] == [CONSENTED, NEVER]
    link = seen["consentLink"]["out"]["consentLink"]
    assert link.startswith(f"https://login.microsoftonline.com/{NEVER}/v2.0/adminconsent?")
    assert f"client_id={MULTI_TENANT_CLIENT_ID}" in link

    before = seen["healthBefore"]
    assert before["code"] == 1
    assert before["out"]["status"] == 503
    assert before["out"]["tenants"][CONSENTED] == {
        "token": "ok",
        "graphRoles": "ok",
        "storage": "ok",
    }
    assert before["out"]["tenants"][NEVER]["token"] == "failed"

    after = seen["healthAfter"]
    assert (after["code"], after["out"]["status"]) == (0, 200)
    assert after["out"]["tenants"][NEVER] == {"token": "ok", "graphRoles": "ok", "storage": "ok"}

    assert seen["updateStale"]["code"] == 1
    assert seen["update"]["code"] == 0
    assert seen["update"]["out"]["displayName"] == "Contoso EU"
    assert seen["secret"]["code"] == 1
    assert "whsec_" not in json.dumps(seen["secret"])

    # Bound to the consented tenant alone: it sees that one, the other is unknown to it, it
    # cannot bind itself further, and unbound it sees nothing from its next request on.
    assert seen["bind"]["code"] == 0, seen["bind"]
    assert seen["bind"]["out"]["tenants"] == [CONSENTED]
    bound_list = json.loads(seen["boundList"]["out"])
    assert [t["tenantId"] for t in bound_list["tenants"]] == [CONSENTED]
    assert seen["boundOther"]["code"] != 0
    assert "404" in seen["boundOther"]["out"] + seen["boundOther"]["err"]
    assert seen["boundBind"]["code"] != 0
    assert list(json.loads(seen["boundHealth"]["out"])["tenants"]) == [CONSENTED]
    assert [b["principal"] for b in seen["bindings"]["out"]["bindings"]] == [
        seen["bind"]["out"]["principal"]
    ]
    assert seen["unbind"]["code"] == 0
    assert json.loads(seen["unboundList"]["out"])["count"] == 0

    # The customer that left: its tenant fails the deep check (503) until it is retired; then
    # the check passes without it, the default list leaves it out, and it can be reinstated.
    assert seen["healthLeaver"]["code"] == 1
    assert seen["healthLeaver"]["out"]["tenants"][LEAVER]["token"] == "failed"
    assert (seen["retire"]["code"], seen["retire"]["out"]["state"]) == (0, "retired")
    assert (seen["healthRetired"]["code"], seen["healthRetired"]["out"]["status"]) == (0, 200)
    assert LEAVER not in seen["healthRetired"]["out"]["tenants"]
    assert LEAVER not in [t["tenantId"] for t in seen["listActive"]["out"]["tenants"]]
    assert [t["tenantId"] for t in seen["listRetired"]["out"]["tenants"]] == [LEAVER]
    assert (seen["reinstate"]["code"], seen["reinstate"]["out"]["state"]) == (0, "active")
