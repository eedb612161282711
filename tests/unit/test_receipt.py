"""The receipt's wire shape and its verification: ES256 only, the key from the published set,
every claim typed, and each way a receipt can lie refused with the field named."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from dsr_export.domain import receipt
from dsr_export.domain.receipt import ReceiptClaims, ReceiptError
from tests.receipts import DEFAULT_FILES, LocalSigner, claims_for, manifest_bytes


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(signer: LocalSigner) -> ReceiptClaims:
    return claims_for(manifest_bytes(DEFAULT_FILES), DEFAULT_FILES, signer.issuer)


def forged(header: dict[str, object], payload: dict[str, object], signature: bytes) -> str:
    encoded = [b64(json.dumps(part).encode()) for part in (header, payload)]
    return ".".join([*encoded, b64(signature)])


def test_a_signed_receipt_verifies_and_gives_back_the_typed_claims():
    signer = LocalSigner()
    token = signer.sign_receipt(claims(signer))
    kid, verified = receipt.verify_receipt(token, signer.jwks())
    assert kid == signer.kid
    assert verified == claims(signer)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": signer.kid, "typ": "dsr-receipt+jwt"}


def test_the_wire_shape_is_the_documented_one():
    signer = LocalSigner()
    wire = claims(signer).to_wire()
    assert set(wire) == {
        "requestId", "generation", "manifestSha256", "packageSha256", "fileCount",
        "totalBytes", "completedAt", "packagedAt", "evidenceHeadSha256", "iat", "iss",
    }  # fmt: skip
    assert wire["packagedAt"] == "2026-12-07T18:00:00Z"
    assert ReceiptClaims.from_wire(wire) == claims(signer)


def test_a_receipt_signed_by_a_key_not_published_is_refused_naming_the_kid():
    signer, other = LocalSigner(), LocalSigner()
    token = other.sign_receipt(claims(other))
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(token, signer.jwks())
    assert refused.value.field == "kid"
    assert "another key" in str(refused.value)


def test_a_receipt_claiming_a_published_kid_but_signed_by_another_key_fails_its_signature():
    signer = LocalSigner()
    impostor = LocalSigner(kid=signer.kid)
    token = impostor.sign_receipt(claims(signer))
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(token, signer.jwks())
    assert refused.value.field == "signature"


def test_an_altered_payload_fails_the_signature():
    signer = LocalSigner()
    header, _, signature = signer.sign_receipt(claims(signer)).split(".")
    payload = b64(json.dumps({**claims(signer).to_wire(), "fileCount": 99}).encode())
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(f"{header}.{payload}.{signature}", signer.jwks())
    assert refused.value.field == "signature"


def test_alg_none_is_refused_before_any_key_is_used():
    signer = LocalSigner()
    token = forged(
        {"alg": "none", "kid": signer.kid, "typ": "dsr-receipt+jwt"},
        claims(signer).to_wire(),
        b"",
    )
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(token, signer.jwks())
    assert refused.value.field == "alg"


def test_hs256_keyed_with_the_public_key_is_refused():
    """The classic confusion: HMAC over the token with the published key as the secret."""
    signer = LocalSigner()
    jwk = signer.jwks()["keys"][0]
    header = {"alg": "HS256", "kid": signer.kid, "typ": "dsr-receipt+jwt"}
    encoded = ".".join(b64(json.dumps(p).encode()) for p in (header, claims(signer).to_wire()))
    for secret in (json.dumps(jwk).encode(), jwk["x"].encode()):
        mac = hmac.new(secret, encoded.encode(), hashlib.sha256).digest()
        with pytest.raises(ReceiptError) as refused:
            receipt.verify_receipt(f"{encoded}.{b64(mac)}", signer.jwks())
        assert refused.value.field == "alg"


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"alg": "ES256", "kid": "K", "typ": "JWT"}, "typ"),
        ({"alg": "ES256", "typ": "dsr-receipt+jwt"}, "kid"),
        ({"alg": "ES256", "kid": "K", "typ": "dsr-receipt+jwt", "crit": ["x"], "x": 1}, "header"),
        ({"alg": "ES256", "kid": "K", "typ": "dsr-receipt+jwt", "jwk": {"kty": "EC"}}, "header"),
    ],
)
def test_headers_a_receipt_never_has_are_refused(header, field):
    signer = LocalSigner(kid="K")
    token = forged(header, claims(signer).to_wire(), b"\0" * 64)
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(token, signer.jwks())
    assert refused.value.field == field


def test_a_private_key_in_the_set_or_another_curve_is_not_a_published_key():
    signer = LocalSigner()
    token = signer.sign_receipt(claims(signer))
    entry = signer.jwks()["keys"][0]
    for bad in ({**entry, "d": "secret"}, {**entry, "crv": "P-384"}, {**entry, "alg": "HS256"}):
        with pytest.raises(ReceiptError) as refused:
            receipt.verify_receipt(token, {"keys": [bad]})
        assert refused.value.field == "jwks"


def test_claims_are_typed_and_the_first_wrong_one_is_named():
    signer = LocalSigner()
    wire = claims(signer).to_wire()
    for name, value in (
        ("generation", "1"),
        ("fileCount", True),
        ("manifestSha256", "ABC"),
        ("completedAt", "yesterday"),
        ("completedAt", "2026-12-06T09:30:00"),
        ("requestId", None),
    ):
        with pytest.raises(ReceiptError) as refused:
            ReceiptClaims.from_wire({**wire, name: value})
        assert refused.value.field == name


def test_a_signed_receipt_with_an_untyped_claim_is_refused():
    """The signature is good but the claim is not what a receipt carries: not a receipt."""
    signer = LocalSigner()
    signed = receipt.signing_input(signer.kid, claims(signer))
    header = signed.split(b".")[0].decode()
    payload = b64(json.dumps({**claims(signer).to_wire(), "totalBytes": "many"}).encode())
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    message = f"{header}.{payload}".encode()
    r, s = decode_dss_signature(signer.key.sign(message, ec.ECDSA(hashes.SHA256())))
    token = f"{header}.{payload}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    with pytest.raises(ReceiptError) as refused:
        receipt.verify_receipt(token, signer.jwks())
    assert refused.value.field == "totalBytes"


def test_compact_takes_key_vaults_raw_signature_and_refuses_der():
    signer = LocalSigner()
    signed = receipt.signing_input(signer.kid, claims(signer))
    der = signer.key.sign(signed, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ReceiptError) as refused:
        receipt.compact(signed, der)
    assert refused.value.field == "signature"
    assert receipt.compact(signed, b"\1" * 64).endswith("." + b64(b"\1" * 64))


def test_claims_refuse_what_a_receipt_cannot_say():
    signer = LocalSigner()
    with pytest.raises(ReceiptError):
        replace(claims(signer), generation=0)
    with pytest.raises(ReceiptError):
        replace(claims(signer), evidence_head_sha256="nothex")


def test_the_jwks_lists_each_kid_once_in_the_order_given():
    one, two = LocalSigner(), LocalSigner()
    keys = [*two.public_keys(), *one.public_keys(), *two.public_keys()]
    assert [k["kid"] for k in receipt.jwks_document(keys)["keys"]] == [two.kid, one.kid]


def test_a_receipt_issued_ahead_of_the_readers_clock_still_verifies():
    """iat is a statement: an offline host's fast clock, or a skewed signer, is no forgery."""
    signer = LocalSigner()
    future = replace(claims(signer), issued_at=datetime(2099, 1, 1, tzinfo=UTC))
    assert receipt.verify_receipt(signer.sign_receipt(future), signer.jwks())[1] == future
