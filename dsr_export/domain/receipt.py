"""The signed receipt of a subject's package, and how anyone checks it without trusting us.

A receipt is a compact JWS (RFC 7515) signed with ES256 (RFC 7518: ECDSA P-256 over SHA-256,
the signature as the 64 bytes ``r || s``) by the app's Key Vault key. Its claims bind the
package's ``manifest.json`` (whose SHA-256 they carry, and which lists every file with its own
SHA-256) to the DSR, its times and the head of its evidence chain. The public keys are a JWK
Set (RFC 7517) the app publishes at ``/api/.well-known/jwks.json``; a DPO or a regulator who
keeps a copy of that set can check a package years later, offline.

Pure: no I/O. The signer (an adapter) hands :func:`signing_input` to Key Vault and gives the raw
signature back to :func:`compact`; ``dsrctl verify`` opens the ZIP and the JWKS and calls
:func:`verify_receipt` and :func:`verify_package`. Verification pins the algorithm to ES256
(``alg: none`` and HS256-with-the-public-key confusion are refused before any key is used),
looks the key up by ``kid`` in the set the verifier trusts (never a key the token carries), and
types every claim.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import jwt

__all__ = [
    "ALGORITHM",
    "MANIFEST_NAME",
    "RECEIPT_NAME",
    "RECEIPT_TYPE",
    "PackageCheck",
    "ReceiptClaims",
    "ReceiptError",
    "compact",
    "header",
    "jwk_for_ec_p256",
    "jwks_document",
    "signing_input",
    "verify_package",
    "verify_receipt",
]

ALGORITHM: Final = "ES256"
RECEIPT_TYPE: Final = "dsr-receipt+jwt"
MANIFEST_NAME: Final = "manifest.json"
RECEIPT_NAME: Final = "receipt.jws"
#: ES256's signature: r and s, 32 bytes each, big-endian (RFC 7518 section 3.4).
ES256_SIGNATURE_BYTES: Final = 64
#: Members a package holds besides the files its manifest lists.
_SEALS: Final = frozenset({MANIFEST_NAME, RECEIPT_NAME})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEADER_NAMES: Final = frozenset({"alg", "kid", "typ"})
#: manifest.json and receipt.jws are read whole: a member claiming more is not one of them.
_SEAL_MAX_BYTES: Final = 256 << 20


class ReceiptError(ValueError):
    """A receipt that is not well formed, not signed by a published key, or not ours.

    ``field`` names what is wrong (``alg``, ``kid``, ``signature``, a claim's name), so that a
    person reading ``dsrctl verify`` knows where to look.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ReceiptClaims:
    """What a receipt says: the package (through its manifest), the DSR, when, and by whom."""

    request_id: str
    generation: int
    manifest_sha256: str
    #: The manifest's SHA-256 as well (manifestVersion 1): the ZIP's own hash cannot be inside
    #: the ZIP, so it goes to the evidence's ``packaged`` record instead.
    package_sha256: str
    file_count: int
    total_bytes: int
    #: None when the DSR's completion time is not known (the wire says null).
    completed_at: datetime | None
    packaged_at: datetime
    #: None when the DSR has no evidence head to bind (the wire says null).
    evidence_head_sha256: str | None
    issued_at: datetime
    issuer: str

    def __post_init__(self) -> None:
        for name, value in (
            ("manifestSha256", self.manifest_sha256),
            ("packageSha256", self.package_sha256),
            ("evidenceHeadSha256", self.evidence_head_sha256),
        ):
            if value is None and name == "evidenceHeadSha256":
                continue
            if value is None or not _SHA256.match(value):
                raise ReceiptError(name, "must be 64 lower-case hex digits")
        for name, moment in (
            ("completedAt", self.completed_at),
            ("packagedAt", self.packaged_at),
            ("iat", self.issued_at),
        ):
            if moment is not None and moment.tzinfo is None:
                raise ReceiptError(name, "must be a time with a time zone")
        if not self.request_id:
            raise ReceiptError("requestId", "must not be empty")
        if not self.issuer:
            raise ReceiptError("iss", "must not be empty")
        if self.generation < 1:
            raise ReceiptError("generation", "must be 1 or more")
        if self.file_count < 0 or self.total_bytes < 0:
            raise ReceiptError("fileCount", "counts cannot be negative")

    def to_wire(self) -> dict[str, Any]:
        """The JWS payload, with the names of docs/delivery.md."""
        return {
            "requestId": self.request_id,
            "generation": self.generation,
            "manifestSha256": self.manifest_sha256,
            "packageSha256": self.package_sha256,
            "fileCount": self.file_count,
            "totalBytes": self.total_bytes,
            "completedAt": _instant(self.completed_at) if self.completed_at else None,
            "packagedAt": _instant(self.packaged_at),
            "evidenceHeadSha256": self.evidence_head_sha256,
            "iat": int(self.issued_at.timestamp()),
            "iss": self.issuer,
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any]) -> ReceiptClaims:
        """Typed claims from a verified payload; ReceiptError names the first claim at fault."""
        return cls(
            request_id=_text(payload, "requestId"),
            generation=_whole(payload, "generation"),
            manifest_sha256=_text(payload, "manifestSha256"),
            package_sha256=_text(payload, "packageSha256"),
            file_count=_whole(payload, "fileCount"),
            total_bytes=_whole(payload, "totalBytes"),
            completed_at=_time(payload, "completedAt")
            if payload.get("completedAt") is not None
            else None,
            packaged_at=_time(payload, "packagedAt"),
            evidence_head_sha256=(
                _text(payload, "evidenceHeadSha256")
                if payload.get("evidenceHeadSha256") is not None
                else None
            ),
            issued_at=datetime.fromtimestamp(_whole(payload, "iat"), UTC),
            issuer=_text(payload, "iss"),
        )


# -- signing (the adapter does the Key Vault call in between) ------------------------------


def header(kid: str) -> dict[str, str]:
    """The protected header: ES256, the signing key version's full id, and the receipt type."""
    if not kid:
        raise ReceiptError("kid", "must not be empty")
    return {"alg": ALGORITHM, "kid": kid, "typ": RECEIPT_TYPE}


def signing_input(kid: str, claims: ReceiptClaims) -> bytes:
    """``BASE64URL(header) '.' BASE64URL(payload)``: the bytes whose SHA-256 Key Vault signs."""
    return b".".join(
        _b64(json.dumps(part, separators=(",", ":"), sort_keys=True).encode())
        for part in (header(kid), claims.to_wire())
    )


def compact(signed: bytes, signature: bytes) -> str:
    """The compact JWS from the signing input and ES256's raw ``r || s`` signature.

    Key Vault's EC signatures are already in that form (not DER), which is why the check on the
    length is the only conversion there is.
    """
    if len(signature) != ES256_SIGNATURE_BYTES:
        raise ReceiptError(
            "signature",
            f"an ES256 signature is {ES256_SIGNATURE_BYTES} bytes (r || s), got {len(signature)}",
        )
    return f"{signed.decode('ascii')}.{_b64(signature).decode('ascii')}"


# -- public keys ---------------------------------------------------------------------------


def jwk_for_ec_p256(kid: str, x: bytes, y: bytes) -> dict[str, str]:
    """The public JWK of one P-256 key version, as the JWKS publishes it."""
    if len(x) != 32 or len(y) != 32:
        raise ReceiptError("kid", f"{kid} is not a P-256 public key")
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(x).decode("ascii"),
        "y": _b64(y).decode("ascii"),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def jwks_document(keys: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """``{"keys": [...]}``, newest first as given, one entry per kid."""
    seen: set[str] = set()
    listed = []
    for key in keys:
        if key["kid"] not in seen:
            seen.add(key["kid"])
            listed.append(dict(key))
    return {"keys": listed}


# -- verification --------------------------------------------------------------------------


def verify_receipt(token: str, jwks: Mapping[str, Any]) -> tuple[str, ReceiptClaims]:
    """The signing key's id and the typed claims of a receipt the JWK Set ``jwks`` vouches for.

    Refused (ReceiptError): anything but a three-part compact JWS; a header other than
    ``alg: ES256`` (so ``none`` and HS256 never reach a key), an unexpected ``typ``, a ``crit``
    or any header we do not know; a ``kid`` not in the set, or whose entry is not an EC P-256
    signing key; a signature that does not verify; a claim missing or of the wrong type.
    """
    token = token.strip()
    if token.count(".") != 2:
        raise ReceiptError("receipt", "is not a compact JWS (three parts separated by dots)")
    try:
        protected = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise ReceiptError("header", f"cannot be read ({exc})") from None
    if protected.get("alg") != ALGORITHM:
        raise ReceiptError("alg", f"must be {ALGORITHM}, the receipt says {protected.get('alg')!r}")
    unknown = set(protected) - _HEADER_NAMES
    if unknown:
        raise ReceiptError("header", f"holds parameters a receipt never has: {sorted(unknown)}")
    if protected.get("typ") != RECEIPT_TYPE:
        raise ReceiptError("typ", f"must be {RECEIPT_TYPE}, got {protected.get('typ')!r}")
    kid = protected.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ReceiptError("kid", "is missing")
    key = _published_key(jwks, kid)
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            # A receipt is checked years after it was signed, and its iat is a statement, not a
            # validity window: no clock comparison (the signer's clock may run ahead offline).
            options={
                "require": ["iat", "iss"],
                "verify_aud": False,
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise ReceiptError(
            "signature", f"does not verify with the published key {kid}: the receipt was altered"
        ) from None
    except jwt.PyJWTError as exc:
        raise ReceiptError("receipt", str(exc)) from None
    return kid, ReceiptClaims.from_wire(payload)


def _published_key(jwks: Mapping[str, Any], kid: str) -> Any:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ReceiptError("jwks", 'is not a JWK Set (no "keys" list)')
    matches = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
    if not matches:
        raise ReceiptError(
            "kid", f"{kid} is not among the {len(keys)} published key(s): signed by another key"
        )
    if len(matches) > 1:
        raise ReceiptError("jwks", f"lists {kid} more than once")
    entry = matches[0]
    if entry.get("kty") != "EC" or entry.get("crv") != "P-256" or "d" in entry:
        raise ReceiptError("jwks", f"the entry {kid} is not a public EC P-256 key")
    if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
        raise ReceiptError("jwks", f"the entry {kid} is not an {ALGORITHM} signing key")
    try:
        return jwt.PyJWK(dict(entry), algorithm=ALGORITHM).key
    except jwt.PyJWTError as exc:
        raise ReceiptError("jwks", f"the entry {kid} cannot be used ({exc})") from None


@dataclass(frozen=True)
class PackageCheck:
    """What ``dsrctl verify`` found: the receipt's claims (when it verified) and each difference.

    ``problems`` is empty exactly when every file matches the manifest, the manifest matches
    the receipt, and the receipt's signature verifies with a published key.
    """

    claims: ReceiptClaims | None
    kid: str | None
    files_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.claims is not None


def verify_package(
    parts: Mapping[str, zipfile.ZipFile], jwks: Mapping[str, Any], *, first: str
) -> PackageCheck:
    """Check a package (its ZIP parts by file name, ``first`` holding the manifest and receipt).

    Every difference is collected, not only the first, so the reader sees the whole picture:
    a file changed, missing, or added; the manifest not the one the receipt signed; a receipt
    not signed by a published key. A member name that appears twice in one ZIP is a problem in
    itself (readers disagree on which copy they show).
    """
    problems: list[str] = []
    archive = parts[first]
    names = archive.namelist()
    problems += [f"{first}: the member {n} appears more than once" for n in _duplicates(names)]
    manifest_bytes = _member(archive, MANIFEST_NAME)
    receipt_bytes = _member(archive, RECEIPT_NAME)
    if manifest_bytes is None:
        problems.append(f"{first}: {MANIFEST_NAME} is missing")
    if receipt_bytes is None:
        problems.append(f"{first}: {RECEIPT_NAME} is missing")
    claims: ReceiptClaims | None = None
    kid: str | None = None
    if receipt_bytes is not None:
        try:
            kid, claims = verify_receipt(receipt_bytes.decode("ascii", "replace"), jwks)
        except ReceiptError as exc:
            problems.append(f"receipt: {exc}")
    if manifest_bytes is None:
        return PackageCheck(claims, kid, 0, tuple(problems))
    try:
        manifest = _manifest(manifest_bytes)
    except ReceiptError as exc:
        problems.append(f"manifest: {exc}")
        return PackageCheck(claims, kid, 0, tuple(problems))
    if claims is not None:
        problems += _against_receipt(manifest_bytes, manifest, claims)
    problems += _parts_named(manifest, parts, first)
    checked, differences = _files(manifest, parts)
    problems += differences
    return PackageCheck(claims, kid, checked, tuple(problems))


@dataclass(frozen=True)
class _ManifestFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class _Manifest:
    request_id: str
    generation: int
    files: tuple[_ManifestFile, ...]
    parts: tuple[str, ...]


def _manifest(raw: bytes) -> _Manifest:
    """What verification needs of manifest.json (docs/delivery.md), each value typed."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReceiptError(MANIFEST_NAME, f"is not UTF-8 JSON ({exc})") from None
    if not isinstance(document, Mapping):
        raise ReceiptError(MANIFEST_NAME, "is not a JSON object")
    files = document.get("files")
    if not isinstance(files, list):
        raise ReceiptError("files", "must be a list")
    listed = []
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(entry, Mapping):
            raise ReceiptError(where, "must be an object")
        path, size, digest = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not path or path in _SEALS:
            raise ReceiptError(f"{where}.path", "must name a member of the package")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ReceiptError(f"{where}.size", "must be a whole number of bytes")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ReceiptError(f"{where}.sha256", "must be 64 lower-case hex digits")
        listed.append(_ManifestFile(path, size, digest))
    part_names = document.get("parts", [])
    if not isinstance(part_names, list) or not all(isinstance(p, str) for p in part_names):
        raise ReceiptError("parts", "must be a list of file names")
    return _Manifest(
        request_id=_text(document, "requestId"),
        generation=_whole(document, "generation"),
        files=tuple(listed),
        parts=tuple(part_names),
    )


def _against_receipt(raw: bytes, manifest: _Manifest, claims: ReceiptClaims) -> list[str]:
    problems = []
    digest = hashlib.sha256(raw).hexdigest()
    if digest != claims.manifest_sha256:
        problems.append(
            f"{MANIFEST_NAME}: its SHA-256 is {digest}, the receipt signed "
            f"{claims.manifest_sha256}: the manifest was edited"
        )
    if claims.package_sha256 != claims.manifest_sha256:
        problems.append("receipt: packageSha256 differs from manifestSha256 (manifestVersion 1)")
    if manifest.request_id != claims.request_id or manifest.generation != claims.generation:
        problems.append(
            f"{MANIFEST_NAME}: it is for {manifest.request_id} generation {manifest.generation}, "
            f"the receipt for {claims.request_id} generation {claims.generation}"
        )
    if len(manifest.files) != claims.file_count:
        problems.append(
            f"{MANIFEST_NAME}: lists {len(manifest.files)} files, the receipt {claims.file_count}"
        )
    total = sum(f.size for f in manifest.files)
    if total != claims.total_bytes:
        problems.append(f"{MANIFEST_NAME}: lists {total} bytes, the receipt {claims.total_bytes}")
    return problems


def _parts_named(
    manifest: _Manifest, parts: Mapping[str, zipfile.ZipFile], first: str
) -> list[str]:
    """The other parts the manifest names, each present. A file's own name is not checked (a
    browser saves ``package (1).zip``); the file holding the manifest stands for its own part,
    or for the first part when its name is not listed."""
    listed = list(manifest.parts)
    others = [n for n in listed if n != first] if first in listed else listed[1:]
    problems = [
        f"{name}: a part the manifest names is missing" for name in others if name not in parts
    ]
    problems += [
        f"{name}: not a part of this package"
        for name in sorted(parts)
        if name != first and name not in listed
    ]
    return problems


def _files(manifest: _Manifest, parts: Mapping[str, zipfile.ZipFile]) -> tuple[int, list[str]]:
    """Each listed file against the bytes in the parts; each member nobody listed."""
    problems: list[str] = []
    where: dict[str, tuple[str, zipfile.ZipInfo]] = {}
    for part_name, archive in sorted(parts.items()):
        for info in archive.infolist():
            if info.is_dir() or info.filename in _SEALS:
                continue
            if info.filename in where:
                problems.append(f"{info.filename}: appears more than once in the package")
                continue
            where[info.filename] = (part_name, info)
    listed = {f.path for f in manifest.files}
    checked = 0
    for entry in manifest.files:
        found = where.get(entry.path)
        if found is None:
            problems.append(f"{entry.path}: listed in the manifest but missing from the package")
            continue
        part_name, info = found
        size, digest = _hash_member(parts[part_name], info)
        checked += 1
        if digest is None:
            problems.append(f"{entry.path}: cannot be read (a corrupted or encrypted member)")
        elif size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
        elif digest != entry.sha256:
            problems.append(
                f"{entry.path}: its SHA-256 is {digest}, the manifest says {entry.sha256}: "
                "the file was changed"
            )
    problems += [
        f"{name}: in the package but not in the manifest (a file was added)"
        for name in sorted(set(where) - listed)
    ]
    return checked, problems


def _hash_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, str | None]:
    """Size and SHA-256 of one member, streamed (members can be gigabytes)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                digest.update(chunk)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError):
        # A corrupted member (CRC mismatch, truncation) or an encrypted one: unreadable.
        return -1, None
    return size, digest.hexdigest()


def _member(archive: zipfile.ZipFile, name: str) -> bytes | None:
    """A seal's bytes; None when absent, b"" when unreadable or larger than a seal can be."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > _SEAL_MAX_BYTES:
        return b""
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError):
        return b""


def _duplicates(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    twice = []
    for name in names:
        if name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    return twice


# -- small typed readers -------------------------------------------------------------------


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise ReceiptError(name, "must be a non-empty string")
    return value


def _whole(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReceiptError(name, "must be a whole number")
    return value


def _time(payload: Mapping[str, Any], name: str) -> datetime:
    raw = _text(payload, name)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ReceiptError(name, f"must be an RFC 3339 time, got {raw!r}") from None
    if moment.tzinfo is None:
        raise ReceiptError(name, "must carry a time zone")
    return moment
