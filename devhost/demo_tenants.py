"""``make demo-tenants`` (``python -m devhost demo --tenants``): one deployment, two customer
tenants, offline, in seconds (issue 21, ``TENANCY=multi``).

An MSP's day in a few lines: two customer tenants (they consented to the app; its federated
identity credential trusts the app's managed identity, so there is no secret anywhere) are
registered, each customer's ticketing system gets a key bound to its tenant, and both send the
same ticket id for the same address, which names a different person in each directory. Two
DSRs complete into their own containers and evidence chains; a key bound to one tenant finds
nothing of the other (404, as for a DSR that does not exist) and lists only its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import requests

from devhost.demo import _EventCounter
from devhost.entra import CUSTOMER_TENANTS
from devhost.graph import DEMO_DIRECTORY
from devhost.stack import DevStack, StackOptions
from dsr_export.domain.callers import from_function_key

#: Two hours of Graph export time in about a second: the act is about tenants, not waiting.
SPEED = 20_000.0
EXPORT_DURATION = timedelta(hours=2)
TIMEOUT_SECONDS = 60.0
TICKET = "RITM0012345"
TERMINAL = {"completed", "failed", "timed_out", "cancelled"}
#: The customers, as the MSP's registry names them (the local Entra's first two customer
#: tenants, both of which consented when the stack started).
CUSTOMERS = {"Contoso": CUSTOMER_TENANTS[0], "Fabrikam": CUSTOMER_TENANTS[1]}


def run_tenants_demo(state_dir: Path, out: TextIO = sys.stdout) -> int:
    """Run the two-tenant act; 0 only when both DSRs completed apart and each key saw only its
    own tenant."""
    operator_key = secrets.token_urlsafe(24)
    settings = {
        "TENANCY": "multi",
        "AUTH_FUNCTION_KEY_ROLES": "DSR.Submit,DSR.Read,DSR.Manage,DSR.Admin",
        # The MSP's own key is bound to every tenant by configuration.
        "TENANCY_OPERATORS": from_function_key(operator_key, ()).id,
    }
    # The app runs in this process and reads the process environment, as it would in Azure.
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    options = StackOptions(
        state_dir=state_dir,
        use_local_settings=False,
        function_key=operator_key,
        speed=SPEED,
        export_duration=EXPORT_DURATION,
    )
    started = time.monotonic()
    events = _EventCounter()
    app_logger = logging.getLogger("dsr_export")
    app_logger.addHandler(events)
    level, propagate = app_logger.level, app_logger.propagate
    app_logger.setLevel(logging.INFO)
    app_logger.propagate = False  # counted, not printed; errors are passed on
    try:
        with DevStack(options, environ=os.environ) as stack:
            out.write(
                f"offline host up in {time.monotonic() - started:.1f}s with TENANCY=multi: one "
                f"deployment, customer tenants in the local Entra\n"
            )
            verdict = _act(stack, operator_key, out)
    finally:
        app_logger.removeHandler(events)
        app_logger.setLevel(level)
        app_logger.propagate = propagate
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    out.write(
        f"\n{'done' if verdict == 0 else 'NOT as expected'} in {time.monotonic() - started:.0f}s\n"
    )
    return verdict


def _act(stack: DevStack, operator_key: str, out: TextIO) -> int:
    operator = _Caller(stack.api_url, operator_key)
    keys: dict[str, str] = {}
    assert stack.keys is not None
    for name, tenant in CUSTOMERS.items():
        added = operator.call("POST", "/tenants", {"tenantId": tenant, "displayName": name})
        if added.status_code != 201:
            out.write(f"registering {name} refused: {added.status_code} {added.text}\n")
            return 1
        keys[name] = secrets.token_urlsafe(24)
        stack.keys.set_host_key(f"{name.lower()}-ticketing", keys[name])
        bound = from_function_key(keys[name], ()).id
        operator.call("PUT", f"/bindings/{bound}", {"kind": "functionKey", "tenants": [tenant]})
        out.write(
            f"registered {name:<8} tenant {tenant} (consented: the app's federated credential, "
            f"no secret); its ticketing key is bound to {name} only\n"
        )
    user = next(iter(DEMO_DIRECTORY))
    dsrs: dict[str, str] = {}
    for name in CUSTOMERS:
        answer = _Caller(stack.api_url, keys[name]).call(
            "POST", "/exports", {"requestId": TICKET, "user": user, "regulation": "GDPR"}
        )
        if answer.status_code != 202:
            out.write(f"{name}'s ticket refused: {answer.status_code} {answer.text}\n")
            return 1
        dsrs[name] = str(answer.json()["requestId"])
        out.write(
            f"{name:<8} sent {TICKET} with its own key (the same address in both tenants, a "
            f"different person in each): DSR {dsrs[name]}\n"
        )
    finals = {name: _wait(operator, dsr) for name, dsr in dsrs.items()}
    ok = _report(operator, dsrs, finals, out)
    return 0 if _isolation(stack, keys, dsrs, out) and ok else 1


def _report(
    operator: _Caller, dsrs: dict[str, str], finals: dict[str, dict[str, Any]], out: TextIO
) -> bool:
    """Each DSR's end, container, person (object id) and evidence chain, side by side."""
    out.write(f"\n{'tenant':<8} {'DSR':<26} {'result':<10} {'container':<40} person (object id)\n")
    ok = True
    containers, people = set(), set()
    for name, dsr in dsrs.items():
        doc = finals[name]
        evidence = operator.call("GET", f"/exports/{quote(dsr, safe='')}/evidence").json()
        submitted = [r["data"] for r in evidence["records"] if r.get("kind") == "submitted"]
        person = str(submitted[0].get("userObjectId")) if submitted else "-"
        containers.add(doc.get("container"))
        people.add(person)
        out.write(
            f"{name:<8} {dsr:<26} {doc.get('phase', '?'):<10} "
            f"{doc.get('container') or '-':<40} {person}\n"
        )
        verification = evidence["verification"]
        own = {r["requestId"] for r in evidence["records"]} == {dsr}
        out.write(
            f"{'':<8} evidence: {verification['summary']}"
            f"{', its own DSR only' if own else ', MIXED with another DSR'}\n"
        )
        ok = ok and doc.get("phase") == "completed" and bool(verification["ok"]) and own
    apart = len(containers) == len(dsrs) and len(people) == len(dsrs)
    out.write(
        "two DSRs for one ticket id: two containers, two people, two evidence chains\n"
        if apart
        else "the two DSRs share a container or a person\n"
    )
    return ok and apart


def _isolation(stack: DevStack, keys: dict[str, str], dsrs: dict[str, str], out: TextIO) -> bool:
    """Contoso's key asks for Fabrikam's DSR, for one that does not exist, and for its list."""
    contoso = _Caller(stack.api_url, keys["Contoso"])
    theirs = contoso.call("GET", f"/exports/{quote(dsrs['Fabrikam'], safe='')}")
    nothing_id = dsrs["Fabrikam"].rsplit(":", 1)[0] + ":NO-SUCH-DSR"
    nothing = contoso.call("GET", f"/exports/{quote(nothing_id, safe='')}")
    listed = [i["requestId"] for i in contoso.call("GET", "/exports").json()["items"]]
    same = (
        theirs.status_code == nothing.status_code == 404
        and theirs.json()["title"] == (nothing.json()["title"])
    )
    out.write(
        f"\nContoso's key asks for Fabrikam's DSR: {theirs.status_code} "
        f"{theirs.json().get('title')}, the same answer as for a DSR that does not exist\n"
        f"Contoso's key lists {len(listed)} DSR(s): {', '.join(listed)}\n"
    )
    only_own = listed == [dsrs["Contoso"]]
    out.write(
        "nothing of one tenant is visible to the other\n"
        if same and only_own
        else "ISOLATION DOES NOT HOLD\n"
    )
    return same and only_own


def _wait(caller: _Caller, dsr: str) -> dict[str, Any]:
    """The DSR's status once it ended (or the last one seen, at the deadline)."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = caller.call("GET", f"/exports/{quote(dsr, safe='')}")
        if answer.status_code == 200:
            doc = answer.json()
            if doc.get("phase") in TERMINAL:
                break
        time.sleep(0.1)  # poll again a little later, until the deadline
    return doc


class _Caller:
    """The API as one key's holder calls it."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["x-functions-key"] = key

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", json=body, timeout=30)
