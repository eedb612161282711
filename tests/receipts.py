"""Receipts and packages for tests: a local EC key that signs like Key Vault, and a package
built exactly as docs/delivery.md describes it (manifest, receipt, files under data/).

``LocalSigner`` follows the ``ReceiptSigner`` protocol (and ``public_keys``, as the Key Vault
signer has) with a P-256 key held in memory; it is what tests that do not run the offline
vault sign with. ``build_package`` writes one ZIP and answers what it put in it, so a test can
change one byte, drop or add a member, or re-sign with another key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from dsr_export.domain import receipt
from dsr_export.domain.receipt import ReceiptClaims

T_PACKAGED = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


@dataclass
class LocalSigner:
    """An ES256 signer on an in-memory P-256 key, with a Key Vault-shaped ``kid``."""

    issuer: str = "https://dsr.example.com"
    kid: str = field(
        default_factory=lambda: (
            "https://kv-test.vault.azure.net/keys/receipt-signing/" + secrets.token_hex(16)
        )
    )
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def sign_receipt(self, claims: ReceiptClaims) -> str:
        signed = receipt.signing_input(self.kid, claims)
        r, s = decode_dss_signature(self.key.sign(signed, ec.ECDSA(hashes.SHA256())))
        return receipt.compact(signed, r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def public_keys(self) -> list[dict[str, str]]:
        numbers = self.key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return [receipt.jwk_for_ec_p256(self.kid, x, y)]

    def jwks(self) -> dict[str, Any]:
        return receipt.jwks_document(self.public_keys())


DEFAULT_FILES: Mapping[str, bytes] = {
    "data/RequestInfo.json": b'{"requestId": "RITM0012345", "products": ["Exchange"]}\n',
    "data/Exchange/mailbox.json": b'{"items": [{"subject": "hello"}]}\n',
    "index.html": b"<!doctype html><title>Your data</title>\n",
    "README.txt": b"Your data. Check it with: dsrctl verify package.zip\n",
}


@dataclass
class BuiltPackage:
    path: Path
    manifest: bytes
    token: str
    claims: ReceiptClaims
    files: dict[str, bytes]


def manifest_bytes(files: Mapping[str, bytes], request_id: str = "RITM0012345") -> bytes:
    """manifest.json as the contract writes it: sorted keys, 2-space indent, final newline."""
    roles = {"index.html": "index", "README.txt": "readme"}
    document = {
        "manifestVersion": 1,
        "requestId": request_id,
        "generation": 1,
        "packagedAt": "2026-12-07T18:00:00Z",
        "files": [
            {
                "path": path,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mediaType": "application/json" if path.endswith(".json") else "text/plain",
                "product": path.split("/")[1] if path.count("/") > 1 else None,
                "role": roles.get(path, "page" if path.startswith("pages/") else "data"),
            }
            for path, data in sorted(files.items())
        ],
        "withheld": [],
        "parts": ["package.zip"],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def claims_for(manifest: bytes, files: Mapping[str, bytes], issuer: str) -> ReceiptClaims:
    digest = hashlib.sha256(manifest).hexdigest()
    return ReceiptClaims(
        request_id="RITM0012345",
        generation=1,
        manifest_sha256=digest,
        package_sha256=digest,
        file_count=len(files),
        total_bytes=sum(len(d) for d in files.values()),
        completed_at=datetime(2026, 12, 6, 9, 30, tzinfo=UTC),
        packaged_at=T_PACKAGED,
        evidence_head_sha256=hashlib.sha256(b"evidence head").hexdigest(),
        issued_at=T_PACKAGED,
        issuer=issuer,
    )


def build_package(
    folder: Path,
    signer: Any,
    *,
    files: Mapping[str, bytes] = DEFAULT_FILES,
    name: str = "package.zip",
    claims_edit: Mapping[str, Any] | None = None,
) -> BuiltPackage:
    """Write a sealed package signed by ``signer`` (anything with ``sign_receipt``)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = manifest_bytes(files)
    claims = claims_for(manifest, files, signer.issuer)
    if claims_edit:
        claims = replace(claims, **claims_edit)
    token = signer.sign_receipt(claims)
    path = folder / name
    write_zip(
        path, {**files, receipt.MANIFEST_NAME: manifest, receipt.RECEIPT_NAME: token.encode()}
    )
    return BuiltPackage(path, manifest, token, claims, dict(files))


def write_zip(path: Path, members: Mapping[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
