"""``dsrctl verify PACKAGE.zip``: is this the package the organisation signed, byte for byte?

Written for whoever holds the package and does not want to trust the organisation's storage:
the data subject, a DPO, a regulator. Three checks, all here, none by the service:

1. every file in the ZIP against ``manifest.json`` (size and SHA-256), and nothing more or less;
2. ``manifest.json`` against ``receipt.jws`` (its SHA-256, the request, the counts);
3. the receipt's ES256 signature against the organisation's public keys (a JWK Set), looked up
   by the receipt's ``kid``.

The keys come from ``--jwks``: a file (offline, e.g. a copy kept when the package arrived) or
a URL (``https://<app>/api/.well-known/jwks.json``); without it, from the service ``--url``
names. The checks are the pure domain's (:func:`dsr_export.domain.receipt.verify_package`).
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dsr_export.domain import receipt
from dsr_export.domain.receipt import PackageCheck
from dsrctl.client import USER_AGENT, NetworkError

#: Where the service publishes its keys, under the API's base URL.
JWKS_PATH = "/api/.well-known/jwks.json"
#: A JWK Set is small; a source that answers more is not one.
_MAX_JWKS_BYTES = 1 << 20


class VerifyFailed(Exception):
    """The package or the keys cannot be read at all (the message says which and why)."""


@dataclass(frozen=True)
class VerifiedPackage:
    """The check's result and where the keys came from."""

    package: Path
    jwks_source: str
    check: PackageCheck

    def lines(self) -> list[str]:
        check = self.check
        if check.ok and check.claims is not None:
            claims = check.claims
            return [
                f"OK: {self.package.name} is the package {claims.issuer} signed.",
                f"  {check.files_checked} file(s), {claims.total_bytes} bytes, match the "
                "manifest; the manifest matches the receipt.",
                f"  request {claims.request_id} (generation {claims.generation}), completed "
                f"{_when(claims.completed_at) if claims.completed_at else '(unknown)'}, "
                f"packaged {_when(claims.packaged_at)}",
                f"  signed with {check.kid}",
                f"  keys from {self.jwks_source}",
            ]
        lines = [f"FAILED: {self.package.name} is not the package that was signed:"]
        lines += [f"  - {problem}" for problem in check.problems]
        lines.append(f"  keys from {self.jwks_source}")
        return lines

    def document(self) -> dict[str, Any]:
        claims = self.check.claims
        return {
            "ok": self.check.ok,
            "package": str(self.package),
            "jwks": self.jwks_source,
            "kid": self.check.kid,
            "filesChecked": self.check.files_checked,
            "problems": list(self.check.problems),
            "receipt": claims.to_wire() if claims is not None else None,
        }


def verify(
    package: Path, *, jwks: str | None, service_url: str | None, verify_tls: bool | str = True
) -> VerifiedPackage:
    """Check ``package`` (and its sibling parts, if the manifest names any)."""
    source, keys = load_jwks(jwks, service_url=service_url, verify_tls=verify_tls)
    with contextlib.ExitStack() as stack:
        parts = {package.name: _open(stack, package)}
        for name in _other_parts(parts[package.name]):
            sibling = package.with_name(name)
            if sibling.is_file() and name not in parts:
                parts[name] = _open(stack, sibling)
        check = receipt.verify_package(parts, keys, first=package.name)
    return VerifiedPackage(package, source, check)


def load_jwks(
    source: str | None, *, service_url: str | None, verify_tls: bool | str = True
) -> tuple[str, dict[str, Any]]:
    """(where from, the JWK Set) from a file, a URL, or the service's well-known URL."""
    if source is None:
        if not service_url:
            raise VerifyFailed(
                "give the organisation's public keys: --jwks FILE (offline) or --jwks URL, or "
                "--url for the service's /api/.well-known/jwks.json"
            )
        base = service_url.rstrip("/")
        source = (base[: -len("/api")] if base.lower().endswith("/api") else base) + JWKS_PATH
    if source.lower().startswith(("https://", "http://")):
        return source, _fetch(source, verify_tls)
    path = Path(source)
    try:
        raw = path.read_bytes()[: _MAX_JWKS_BYTES + 1]
    except OSError as exc:
        raise VerifyFailed(f"cannot read the keys file {path}: {exc.strerror}") from None
    return str(path), _parse_jwks(raw, str(path))


def _fetch(url: str, verify_tls: bool | str) -> dict[str, Any]:
    try:
        answer = requests.get(
            url, headers={"User-Agent": USER_AGENT}, timeout=30, verify=verify_tls, stream=True
        )
        raw = answer.raw.read(_MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise NetworkError(f"cannot fetch the keys from {url}: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise VerifyFailed(f"{url} answered {answer.status_code}, not a JWK Set")
    return _parse_jwks(raw, url)


def _parse_jwks(raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > _MAX_JWKS_BYTES:
        raise VerifyFailed(f"{where} is larger than a JWK Set can be")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerifyFailed(f"{where} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise VerifyFailed(f'{where} is not a JWK Set (no "keys" list)')
    return document


def _open(stack: contextlib.ExitStack, path: Path) -> zipfile.ZipFile:
    try:
        return stack.enter_context(zipfile.ZipFile(path))
    except FileNotFoundError:
        raise VerifyFailed(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise VerifyFailed(f"{path}: not a readable ZIP file ({exc})") from None


def _other_parts(first: zipfile.ZipFile) -> list[str]:
    """The part names the manifest lists (only plain file names: never a path elsewhere)."""
    try:
        document = json.loads(first.read(receipt.MANIFEST_NAME))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError):
        return []
    names = document.get("parts") if isinstance(document, dict) else None
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and Path(n).name == n]


def _when(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))
