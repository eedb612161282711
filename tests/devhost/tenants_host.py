"""Run by test_tenants_stack.py in a process of its own: the offline host's whole stack with
``TENANCY=multi``, operated with ``dsrctl tenants`` as an operator would.

``python -m tests.devhost.tenants_host STATE OUT``: register a consented tenant and one whose
administrator never consented, list them, fetch the consent link, read the per-tenant health;
then the administrator consents and the health is read again, and the first tenant is renamed
on a stale and on a current version. Last, a second key is bound to the consented tenant
alone with ``dsrctl bindings``, used, and unbound. Then a customer leaves: a third tenant
whose administrator revoked the consent fails the health check until it is retired
(``dsrctl tenants retire``), after which the check passes, the list leaves it out unless
asked, and it is reinstated. Writes what it saw as JSON to OUT; the test judges it. A process
of its own because a process can load ``function_app`` only once (azure-functions).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from devhost.entra import CUSTOMER_TENANTS
from devhost.stack import DevStack, StackOptions
from dsr_export.domain.callers import from_function_key
from dsrctl.commands import cli

CONSENTED, LEAVER, NEVER = CUSTOMER_TENANTS
BOUND_KEY = "contoso-ops-k"


def main(argv: list[str]) -> None:
    state, out = Path(argv[0]), Path(argv[1])
    os.environ["TENANCY"] = "multi"
    os.environ["AUTH_FUNCTION_KEY_ROLES"] = "DSR.Submit,DSR.Read,DSR.Manage,DSR.Admin"
    # The operator's key, bound to every tenant by configuration (a caller is bound nowhere
    # unless a binding or TENANCY_OPERATORS names it).
    os.environ["TENANCY_OPERATORS"] = from_function_key("tenants-k", ()).id
    options = StackOptions(state_dir=state, use_local_settings=False, function_key="tenants-k")
    with DevStack(options, environ=os.environ) as stack:
        runner = CliRunner()
        base = ["--url", stack.api_url, "--function-key", stack.function_key, "--json"]

        def dsrctl(*args: str) -> dict[str, Any]:
            done = runner.invoke(cli, [*base, *args], catch_exceptions=False)
            return {"code": done.exit_code, "out": json.loads(done.stdout or "null")}

        seen: dict[str, Any] = {"clientId": os.environ.get("MULTI_TENANT_CLIENT_ID")}
        seen["add"] = dsrctl(
            "tenants", "add", CONSENTED, "--name", "Contoso", "--regulation", "gdpr"
        )
        seen["addNever"] = dsrctl("tenants", "add", NEVER, "--name", "Fabrikam")
        seen["list"] = dsrctl("tenants", "list")
        seen["consentLink"] = dsrctl("tenants", "consent-link", NEVER)
        seen["healthBefore"] = dsrctl("tenants", "health")
        assert stack.tenant is not None
        stack.tenant.consent(NEVER)  # its administrator opened the link and granted
        seen["healthAfter"] = dsrctl("tenants", "health")
        stale = '"0x8D0000000000000"'
        seen["updateStale"] = dsrctl(
            "tenants", "update", CONSENTED, "--name", "X", "--if-match", stale
        )
        seen["update"] = dsrctl("tenants", "update", CONSENTED, "--name", "Contoso EU")
        seen["secret"] = dsrctl(
            "tenants",
            "update",
            CONSENTED,
            "--callback-secret-ref",
            "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        )
        # A second operator's key, bound to the consented tenant alone: it sees that tenant
        # only, NEVER's consent link is a 404 to it, and once unbound it sees nothing.
        assert stack.keys is not None
        stack.keys.set_host_key("contoso-ops", BOUND_KEY)
        bound = from_function_key(BOUND_KEY, ()).id

        def as_bound(*args: str) -> dict[str, Any]:
            done = runner.invoke(
                cli,
                ["--url", stack.api_url, "--function-key", BOUND_KEY, "--json", *args],
                catch_exceptions=False,
            )
            return {"code": done.exit_code, "out": done.stdout, "err": done.stderr}

        seen["bind"] = dsrctl("bindings", "set", bound, "--tenant", CONSENTED)
        seen["boundList"] = as_bound("tenants", "list")
        seen["boundOther"] = as_bound("tenants", "consent-link", NEVER)
        seen["boundBind"] = as_bound("bindings", "set", bound, "--all-tenants")
        seen["boundHealth"] = as_bound("tenants", "health")
        seen["bindings"] = dsrctl("bindings", "list")
        seen["unbind"] = dsrctl("bindings", "remove", bound)
        seen["unboundList"] = as_bound("tenants", "list")
        # A customer leaves: its administrator deletes the app in their tenant, so its tenant
        # fails the deep check until retired, then drops out of it.
        seen["addLeaver"] = dsrctl("tenants", "add", LEAVER, "--name", "Leaver")
        stack.tenant.revoke(LEAVER)
        seen["healthLeaver"] = dsrctl("tenants", "health")
        seen["retire"] = dsrctl("tenants", "retire", LEAVER, "--yes")
        seen["healthRetired"] = dsrctl("tenants", "health")
        seen["listActive"] = dsrctl("tenants", "list")
        seen["listRetired"] = dsrctl("tenants", "list", "--state", "retired")
        seen["reinstate"] = dsrctl("tenants", "reinstate", LEAVER)
        out.write_text(json.dumps(seen, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
