"""Run by test_receipt_stack.py in a process of its own: the offline host's whole stack with the
app loaded, and the app's own receipt signer (from the composition root, with the settings the
stack gave the process) signing through the local Key Vault with the managed identity.

``python -m tests.devhost.receipt_host sign-rotate STATE CLAIMS OUT``: sign the claims (JSON
wire shape), fetch the JWKS anonymously from the host, rotate the key, sign again, fetch again.
``python -m tests.devhost.receipt_host jwks STATE OUT``: start on the same state (a restart)
and fetch the JWKS. Each writes what it saw as JSON to OUT; the test judges it.

A process per step because a process can load ``function_app`` only once (azure-functions).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import requests

from devhost.stack import DevStack, StackOptions


def _jwks(stack: DevStack) -> dict[str, Any]:
    """GET the JWKS as anyone would: no function key, no token (App Service auth is on)."""
    answer = requests.get(f"{stack.api_url}/.well-known/jwks.json", timeout=30)
    return {
        "status": answer.status_code,
        "cacheControl": answer.headers.get("Cache-Control"),
        "contentType": answer.headers.get("Content-Type"),
        "body": answer.json(),
    }


def main(argv: list[str]) -> None:
    mode, state = argv[0], Path(argv[1])
    options = StackOptions(state_dir=state, use_local_settings=False, function_key="receipt-k")
    with DevStack(options, environ=os.environ) as stack:
        from dsr_export import composition
        from dsr_export.domain.receipt import ReceiptClaims

        seen: dict[str, Any] = {"keyId": os.environ.get("RECEIPT_SIGNING_KEY_ID")}
        if mode == "sign-rotate":
            claims = ReceiptClaims.from_wire(json.loads(Path(argv[2]).read_text()))
            signer = composition.receipt_signer()
            seen["before"] = signer.sign_receipt(claims)
            seen["jwksBefore"] = _jwks(stack)
            assert stack.keyvault is not None
            seen["rotatedTo"] = stack.keyvault.rotate()
            seen["after"] = signer.sign_receipt(claims)
            seen["jwksAfter"] = _jwks(stack)
            seen["vaultRequests"] = list(stack.keyvault.requests)
            # The identity loses its role on the key: the deep health check names the fix.
            assert stack.identity is not None
            stack.keyvault.revoke(stack.identity.object_id, {"read"})
            signer.forget_public_keys()
            health = requests.get(
                f"{stack.api_url}/health",
                params={"deep": "true"},
                headers={"x-functions-key": stack.function_key},
                timeout=60,
            )
            seen["healthWithoutRead"] = {"status": health.status_code, "body": health.json()}
        else:
            seen["jwks"] = _jwks(stack)
        Path(argv[-1]).write_text(json.dumps(seen, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
