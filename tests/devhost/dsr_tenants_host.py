"""Run by test_dsr_tenants_stack.py in a process of its own: the offline host's whole stack with
``TENANCY=multi``, two customer tenants, one ticket id sent in both (issue 21).

``python -m tests.devhost.dsr_tenants_host STATE OUT``: register both tenants, send
``RITM0012345`` for the same UPN in each (a different person in each directory), wait for both
DSRs, read their status and evidence and the callbacks that arrived; then tenant A's
administrator revokes the app's consent and both tenants send another DSR. Writes what it saw
as JSON to OUT; the test judges it. A process of its own because a process can load
``function_app`` only once (azure-functions).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from devhost.entra import CUSTOMER_TENANTS
from devhost.graph import DEMO_DIRECTORY
from devhost.stack import DevStack, StackOptions
from devhost.tls import TlsFiles, server_ssl_context
from dsr_export import composition
from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from dsr_export.domain import events
from dsr_export.domain.callers import from_function_key

A, B, _ = CUSTOMER_TENANTS
TICKET = "RITM0012345"
SECRET = "whsec_ZTJlLWNhbGxiYWNrLXNpZ25pbmcta2V5LTMyLWJ5dGVz"
#: Tenant B's own callback secret, in the (local) Key Vault; the registry holds its URI only.
SECRET_B = "whsec_" + base64.b64encode(b"fabrikam-callback-signing-key-32").decode()
TERMINAL = {"completed", "failed", "timed_out", "cancelled"}
OPERATOR_KEY = "dsr-tenants-k"
#: Fabrikam's ticket system's key, bound to tenant B alone.
B_KEY = "fabrikam-ticketing-k"
DEMO_USER = next(iter(DEMO_DIRECTORY))


class LogLines(logging.Handler):
    """Every log record of the host's process, as text (message and exception): the session's
    scans (no UPN, no SAS or token) run in the pytest process and never see this one's logs."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is still scanned as it is
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        self.lines.append(f"{record.name}: {text}")


class Sink:
    """An HTTPS receiver on loopback that keeps every callback's body."""

    def __init__(self, tls: TlsFiles) -> None:
        self.bodies: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw)
                body["signedWith"] = _signer(self.headers, raw)
                sink.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = server_ssl_context(tls).wrap_socket(
            self.server.socket, server_side=True
        )
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _signer(headers: Any, raw: bytes) -> str | None:
    """Whose key signed the callback: ``A`` (the app's ``CALLBACK_SIGNING_SECRET``), ``B`` (B's
    own secret), or None."""
    for who, secret in (("A", SECRET), ("B", SECRET_B)):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        stamp = int(headers["webhook-timestamp"])
        if events.sign(key, headers["webhook-id"], stamp, raw) == headers["webhook-signature"]:
            return who
    return None


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.headers = url, {"x-functions-key": key}

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return requests.request(
            method, f"{self.url}{path}", json=body, headers=self.headers, timeout=30
        )

    def wait(self, dsr: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.call("GET", f"/exports/{dsr}")
            if answer.status_code == 200:
                doc = answer.json()
                if doc["phase"] in TERMINAL:
                    return doc
            time.sleep(0.1)
        raise AssertionError(f"{dsr} never ended; last status: {doc}")


def submit(api: Api, sink: Sink, ticket: str, tenant: str) -> str:
    body = {
        "requestId": ticket,
        "user": DEMO_USER,
        "tenantId": tenant,
        "callbackUrl": f"https://127.0.0.1:{sink.port}/cb",
    }
    answer = api.call("POST", "/exports", body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["requestId"])


def main(argv: list[str]) -> None:
    state, out = Path(argv[0]), Path(argv[1])
    os.environ.update(
        {
            "TENANCY": "multi",
            "AUTH_FUNCTION_KEY_ROLES": "DSR.Submit,DSR.Read,DSR.Manage,DSR.Admin",
            "CALLBACK_SIGNING_SECRET": SECRET,
            "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            "CALLBACK_ALLOW_LOOPBACK_UNSAFE": "true",
            # The operator's key, bound to every tenant by configuration.
            "TENANCY_OPERATORS": from_function_key(OPERATOR_KEY, ()).id,
        }
    )
    options = StackOptions(
        state_dir=state,
        use_local_settings=False,
        function_key=OPERATOR_KEY,
        speed=20_000.0,
        export_duration=timedelta(hours=2),
    )
    logs = LogLines()
    root = logging.getLogger()
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    with DevStack(options, environ=os.environ) as stack:
        sink = Sink(TlsFiles(state / "tls" / "cert.pem", state / "tls" / "key.pem"))
        api = Api(stack.api_url, stack.function_key)
        seen: dict[str, Any] = {"upn": next(iter(DEMO_DIRECTORY)), "tenants": {}}
        assert stack.keyvault is not None
        ref = stack.keyvault.set_secret("fabrikam-callbacks", SECRET_B).rsplit("/", 1)[0]
        for tenant, extra in ((A, {}), (B, {"callbackSecretRef": ref})):
            added = api.call("POST", "/tenants", {"tenantId": tenant, "displayName": "T", **extra})
            assert added.status_code == 201, added.text
        dsrs = {tenant: submit(api, sink, TICKET, tenant) for tenant in (A, B)}
        for tenant, dsr in dsrs.items():
            seen["tenants"][tenant] = {
                "dsr": dsr,
                "status": api.wait(dsr),
                "evidence": api.call("GET", f"/exports/{dsr}/evidence").json(),
                "crossRead": api.call(
                    "GET", f"/exports/{TICKET}?tenantId={B if tenant == A else A}"
                ).json()["requestId"],
            }
        seen["graphTenants"] = stack.graph.tenants() if stack.graph else []
        seen["bound"] = _as_bound_to_b(stack, api, dsrs[A])
        # A's administrator removes the app. A token already issued lives out its hour (as in
        # Azure); the app's cached credential is dropped as that hour passing would.
        assert stack.tenant is not None
        stack.tenant.revoke(A)
        composition.tenant_credentials().forget(A)
        after = {tenant: submit(api, sink, "RITM0012346", tenant) for tenant in (A, B)}
        seen["afterRevoke"] = {tenant: api.wait(dsr) for tenant, dsr in after.items()}
        seen["afterRevokeEvidence"] = api.call("GET", f"/exports/{after[A]}/evidence").json()
        deadline = time.monotonic() + 30
        ended = [*dsrs.values(), *after.values()]
        while time.monotonic() < deadline and not _all_ended(sink, ended):
            time.sleep(0.1)
        seen["callbacks"] = sink.bodies
        seen["lists"] = {t: api.call("GET", f"/exports?tenantId={t}").json() for t in (A, B)}
        seen["afterRevokeEvidenceB"] = api.call("GET", f"/exports/{after[B]}/evidence").json()
        service = composition.export_storage().service
        seen["evidenceBlobs"] = sorted(
            blob.name for blob in service.get_container_client(EVIDENCE_CONTAINER).list_blobs()
        )
        seen["containers"] = sorted(
            c.name for c in service.list_containers(name_starts_with="dsr-")
        )
    root.removeHandler(logs)
    seen["logs"] = logs.lines
    out.write_text(json.dumps(seen, indent=2))


def _as_bound_to_b(stack: DevStack, api: Api, of_a: str) -> dict[str, Any]:
    """What a key bound to B alone sees: its own DSR by the ticket's id, A's as if it did not
    exist (the same 404 as an id that names nothing), and a list of B's DSRs only."""
    assert stack.keys is not None
    stack.keys.set_host_key("fabrikam-ticketing", B_KEY)
    bound = from_function_key(B_KEY, ()).id
    answer = api.call("PUT", f"/bindings/{bound}", {"kind": "functionKey", "tenants": [B]})
    assert answer.status_code in (200, 201), answer.text
    as_b = Api(api.url, B_KEY)
    theirs = as_b.call("GET", f"/exports/{of_a}")
    nothing = api.call("GET", f"/exports/{of_a.rsplit(':', 1)[0]}:NO-SUCH-DSR")
    return {
        "own": as_b.call("GET", f"/exports/{TICKET}").json(),
        "theirs": [theirs.status_code, theirs.json()],
        "nothing": [nothing.status_code, nothing.json()],
        "evidence": as_b.call("GET", f"/exports/{of_a}/evidence").status_code,
        "list": [item["requestId"] for item in as_b.call("GET", "/exports").json()["items"]],
        "submitForA": as_b.call(
            "POST", "/exports", {"requestId": "X-1", "user": DEMO_USER, "tenantId": A}
        ).status_code,
    }


def _all_ended(sink: Sink, dsrs: list[str]) -> bool:
    ended = {
        body["data"]["requestId"]
        for body in sink.bodies
        if body.get("type") in ("dsr.completed", "dsr.failed")
    }
    return set(dsrs) <= ended


if __name__ == "__main__":
    main(sys.argv[1:])
