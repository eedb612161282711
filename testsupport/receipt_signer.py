"""A receipt signer on a key made in memory, for the offline host's sample package and tests.

It follows the package builder's signer protocol (``sign_receipt(claims)`` with the claims as a
mapping) and signs as Key Vault does: ES256 over the compact JWS's signing input, the signature
as the raw ``r || s`` pair. One copy serves ``python -m devhost screenshots`` and the tests, so
the two cannot drift apart; it needs nothing of the app.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LocalSigner:
    """Signs receipts as ES256 compact JWS with a P-256 key made for this process."""

    __test__ = False  # not a test class, whatever module imports it

    def __init__(self, kid: str = "local-sample-key") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid
        #: Every claim set signed, in order (tests read what the builder asked to sign).
        self.signed: list[Mapping[str, Any]] = []

    def sign_receipt(self, claims: Mapping[str, Any]) -> str:
        """The compact JWS receipt for ``claims``."""
        self.signed.append(dict(claims))
        header = {"alg": "ES256", "kid": self.kid, "typ": "dsr-receipt+jwt"}
        head = _b64url(json.dumps(header, separators=(",", ":")).encode())
        body = _b64url(json.dumps(dict(claims), separators=(",", ":"), sort_keys=True).encode())
        der = self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{head}.{body}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
