"""``GET /api/.well-known/jwks.json``: anonymous, cacheable, the signer's public keys as a JWK
Set that verifies its receipts; a failure is a 503 problem naming what to fix, never cached."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from dsr_export.adapters.receipt_signer import ReceiptSigningError
from dsr_export.domain import receipt
from tests.receipts import DEFAULT_FILES, LocalSigner, claims_for, manifest_bytes
from tests.unit.intake_fakes import app_settings, request


def jwks_request() -> Any:
    return request("GET", ".well-known/jwks.json", key=None)


class FailingSigner:
    issuer = "x"

    def __init__(self, error: ReceiptSigningError) -> None:
        self.error = error

    def public_keys(self) -> list[dict[str, str]]:
        raise self.error

    def sign_receipt(self, claims: Any) -> str:
        raise self.error


def test_the_jwks_verifies_receipts_and_may_be_cached(user_function, swap):
    signer = LocalSigner()
    swap(receipt_signer=signer)
    answer = user_function("get_jwks")(req=jwks_request())
    assert answer.status_code == 200
    assert answer.mimetype == "application/jwk-set+json"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    document = json.loads(answer.get_body())
    token = signer.sign_receipt(
        claims_for(manifest_bytes(DEFAULT_FILES), DEFAULT_FILES, signer.issuer)
    )
    assert receipt.verify_receipt(token, document)[0] == signer.kid


def test_the_route_is_anonymous(app_functions):
    [trigger] = [f.get_trigger() for f in app_functions if f.get_function_name() == "get_jwks"]
    assert str(trigger.auth_level.value).lower() == "anonymous"
    assert trigger.route == ".well-known/jwks.json"


@pytest.mark.parametrize(
    ("transient", "retry_after"), [(False, None), (True, "60")], ids=["role", "outage"]
)
def test_a_key_vault_failure_is_a_503_naming_the_fix_and_not_cached(
    user_function, swap, transient, retry_after
):
    error = ReceiptSigningError(
        "receipt_key_forbidden", "the app's identity may not read the key k", "grant the role"
    )
    error.transient = transient
    swap(receipt_signer=FailingSigner(error))
    answer = user_function("get_jwks")(req=jwks_request())
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    assert "grant the role" in json.loads(answer.get_body())["detail"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers.get("Retry-After") == retry_after


def test_no_signing_key_configured_is_a_503_naming_the_setting(
    user_function: Callable[[str], Any],
):
    assert "RECEIPT_SIGNING_KEY_ID" not in os.environ
    with app_settings():
        answer = user_function("get_jwks")(req=jwks_request())
    assert answer.status_code == 503
    assert "RECEIPT_SIGNING_KEY_ID" in json.loads(answer.get_body())["detail"]
    assert answer.headers["Cache-Control"] == "no-store"
