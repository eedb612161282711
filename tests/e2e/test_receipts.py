"""The receipt keys on the e2e host: ``/api/.well-known/jwks.json`` answers anyone (no function
key, no token) with the key of the host's own local Key Vault, reached by the app through the
managed identity and the proxy the offline host sets up."""

from __future__ import annotations

import requests

from dsr_export.domain import receipt
from tests.e2e.host import HostProcess


def test_the_jwks_answers_without_any_credential(host: HostProcess) -> None:
    answer = requests.get(f"{host.api}/.well-known/jwks.json", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    [key] = answer.json()["keys"]
    assert key["kid"].startswith(f"{host.endpoints['receiptKey']}/")
    assert receipt.jwks_document([key]) == answer.json()
    # The same route under a function key or with another route's key: the same answer.
    keyed = requests.get(
        f"{host.api}/.well-known/jwks.json", headers={"x-functions-key": "wrong"}, timeout=30
    )
    assert keyed.status_code == 200
