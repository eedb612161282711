"""The subject's package: its ``manifest.json`` and the names of its members.

The manifest is the contract the receipt signs and ``dsrctl verify`` checks
(docs/delivery.md, "The package's format"): every member of every part except ``manifest.json``
and ``receipt.jws``, sorted by path, each with its size, SHA-256, media type, the product (top
folder of the export) it came from and its role. Written once, in one byte form: UTF-8 JSON,
sorted keys, 2-space indent, a trailing newline; so the same package always has the same
manifest hash.

Member names are derived here, never from raw input alone: a blob name is Graph's (or whatever
wrote into the container), so it may hold ``..`` segments, a backslash, control or bidi-override
characters; :func:`data_member` keeps it readable and makes it safe to extract anywhere.

Pure: no I/O, no clock (times are arguments).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

MANIFEST_VERSION: Final = 1
MANIFEST_MEMBER: Final = "manifest.json"
RECEIPT_MEMBER: Final = "receipt.jws"
INDEX_MEMBER: Final = "index.html"
README_MEMBER: Final = "README.txt"
DATA_DIR: Final = "data/"
PAGES_DIR: Final = "pages/"
#: The single part's name; split packages are ``package.part-001.zip`` and on.
SINGLE_PART: Final = "package.zip"
#: What ``product`` is for a file at the export's root (RequestInfo.json has its own).
ROOT_PRODUCT: Final = "(root)"
REQUEST_INFO: Final = "RequestInfo.json"
#: Languages the package is rendered in (a message catalogue each; English is the source).
PACKAGE_LANGUAGES: Final = ("en", "de")

Role = Literal["data", "index", "page", "readme"]
ROLES: Final[frozenset[str]] = frozenset({"data", "index", "page", "readme"})
#: Reason codes a withheld file may carry (Art. 15(4) and the review flow).
WITHHELD_REASONS: Final = frozenset({"OTHERS_RIGHTS", "LEGAL_PRIVILEGE", "NOT_SUBJECT_DATA"})

#: Media types by extension: the export holds mostly JSON; anything unknown is octet-stream.
_MEDIA_TYPES: Final[Mapping[str, str]] = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".xml": "application/xml",
    ".html": "text/html",
    ".htm": "text/html",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".eml": "message/rfc822",
    ".ics": "text/calendar",
    ".vcf": "text/vcard",
}
#: Already compressed: stored, not deflated again.
COMPRESSED_TYPES: Final = frozenset(
    {"application/zip", "application/gzip", "image/png", "image/jpeg", "image/gif"}
)

#: Characters that never go into a member name as they are: controls, the path separators of
#: other systems, and the bidi controls that make a name read other than it is.
_BIDI: Final = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNSAFE: Final = frozenset("\\:%") | _BIDI


def _escape_char(char: str) -> str:
    if char in _UNSAFE or ord(char) < 0x20 or ord(char) == 0x7F:
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return char


def safe_segment(segment: str) -> str:
    """One path segment as a member name may hold it: ``%``-escaped where unsafe, ``.`` and
    ``..`` escaped whole (never a step up), an empty segment as ``%`` (never ``//``)."""
    if segment in {"", ".", ".."}:
        return {"": "%", ".": "%2E", "..": "%2E%2E"}[segment]
    return "".join(_escape_char(char) for char in segment)


def data_member(blob_name: str) -> str:
    """The member a blob becomes: ``data/`` and its name, segment by segment made safe.

    A plain name (``Exchange/Mailbox.json``) stays as it is, so the person finds the file where
    Microsoft's documentation says it is; a hostile one (``../x``, ``a\\b``, an RLO) cannot
    escape ``data/`` when extracted, nor read as another name.
    """
    return DATA_DIR + "/".join(safe_segment(part) for part in blob_name.split("/"))


def _digest_name(kind: str, name: str) -> str:
    return f"{PAGES_DIR}{kind}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:16]}.html"


def file_page(blob_name: str) -> str:
    """The page that shows one file: named by a hash of its blob name (stable, always safe)."""
    return _digest_name("file", blob_name)


def product_page(product: str) -> str:
    """The page of one product (top folder)."""
    return _digest_name("product", product)


def product_of(blob_name: str) -> str:
    """The product a blob belongs to: its top folder (in the service's own layout, the asset
    group id); ``RequestInfo`` for Graph's receipt, :data:`ROOT_PRODUCT` for other root files."""
    if blob_name == REQUEST_INFO:
        return "RequestInfo"
    head, sep, _ = blob_name.partition("/")
    return head if sep and head else ROOT_PRODUCT


def media_type(name: str) -> str:
    """The media type of a member, by its extension."""
    _, ext = posixpath.splitext(name.lower())
    return _MEDIA_TYPES.get(ext, "application/octet-stream")


def part_names(count: int) -> list[str]:
    """The parts' names: one ``package.zip``, or ``package.part-001.zip`` ... when split."""
    if count <= 1:
        return [SINGLE_PART]
    return [f"package.part-{number:03d}.zip" for number in range(1, count + 1)]


@dataclass(frozen=True)
class PackageFile:
    """One member of the package as the manifest lists it."""

    path: str
    size: int
    sha256: str
    media_type: str
    product: str | None
    role: Role

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "mediaType": self.media_type,
            "product": self.product,
            "role": self.role,
        }


@dataclass(frozen=True)
class Withheld:
    """A file kept out of the package: its hash and why (never its name or content)."""

    sha256: str
    reason_code: str

    def to_dict(self) -> dict[str, str]:
        """The manifest entry."""
        return {"sha256": self.sha256, "reasonCode": self.reason_code}


class ManifestInvalid(ValueError):
    """A manifest that does not follow the format; the message says where."""


@dataclass(frozen=True)
class PackageManifest:
    """``manifest.json``: what the package holds, for the receipt and for verification."""

    request_id: str
    generation: int
    packaged_at: str
    files: tuple[PackageFile, ...]
    withheld: tuple[Withheld, ...] = ()
    parts: tuple[str, ...] = (SINGLE_PART,)
    version: int = field(default=MANIFEST_VERSION)

    @property
    def file_count(self) -> int:
        """How many members the manifest lists."""
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        """Their total size."""
        return sum(item.size for item in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "manifestVersion": self.version,
            "requestId": self.request_id,
            "generation": self.generation,
            "packagedAt": self.packaged_at,
            "files": [item.to_dict() for item in sorted(self.files, key=lambda f: f.path)],
            "withheld": [item.to_dict() for item in self.withheld],
            "parts": list(self.parts),
        }

    def to_bytes(self) -> bytes:
        """The one byte form (sorted keys, 2-space indent, trailing newline)."""
        text = json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, content: bytes) -> PackageManifest:
        """Read a manifest back; :class:`ManifestInvalid` names what is wrong."""
        try:
            raw = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ManifestInvalid("not UTF-8 JSON") from None
        if not isinstance(raw, dict) or raw.get("manifestVersion") != MANIFEST_VERSION:
            raise ManifestInvalid(f"manifestVersion: must be {MANIFEST_VERSION}")
        files = raw.get("files")
        if not isinstance(files, list):
            raise ManifestInvalid("files: must be a list")
        return cls(
            request_id=str(raw.get("requestId")),
            generation=int(raw.get("generation") or 1),
            packaged_at=str(raw.get("packagedAt")),
            files=tuple(_file(index, item) for index, item in enumerate(files)),
            withheld=tuple(
                Withheld(str(item.get("sha256")), str(item.get("reasonCode")))
                for item in raw.get("withheld") or []
                if isinstance(item, dict)
            ),
            parts=tuple(str(part) for part in raw.get("parts") or [SINGLE_PART]),
        )


def _file(index: int, item: object) -> PackageFile:
    if not isinstance(item, dict):
        raise ManifestInvalid(f"files/{index}: must be an object")
    role = item.get("role")
    if role not in ROLES:
        raise ManifestInvalid(f"files/{index}/role: must be one of {sorted(ROLES)}")
    size, digest = item.get("size"), item.get("sha256")
    if type(size) is not int or not isinstance(digest, str) or len(digest) != 64:
        raise ManifestInvalid(f"files/{index}: size and sha256 are required")
    product = item.get("product")
    return PackageFile(
        path=str(item.get("path")),
        size=size,
        sha256=digest,
        media_type=str(item.get("mediaType")),
        product=product if isinstance(product, str) else None,
        role=role,
    )


def manifest_of(
    request_id: str,
    generation: int,
    packaged_at: datetime,
    files: Iterable[PackageFile],
    parts: Sequence[str],
    withheld: Iterable[Withheld] = (),
) -> PackageManifest:
    """The manifest of a package built at ``packaged_at``; files sorted by path."""
    return PackageManifest(
        request_id=request_id,
        generation=generation,
        packaged_at=utc_text(packaged_at),
        files=tuple(sorted(files, key=lambda item: item.path)),
        withheld=tuple(withheld),
        parts=tuple(parts),
    )


def utc_text(moment: datetime) -> str:
    """``2026-12-07T18:00:00Z``: the manifest's and the receipt's time form."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def receipt_claims(
    manifest: PackageManifest,
    manifest_sha256: str,
    *,
    completed_at: str | None,
    evidence_head_sha256: str | None,
    issued_at: datetime,
    issuer: str,
) -> dict[str, Any]:
    """The receipt's payload as docs/delivery.md defines it (receipt19 signs it)."""
    return {
        "requestId": manifest.request_id,
        "generation": manifest.generation,
        "manifestSha256": manifest_sha256,
        "packageSha256": manifest_sha256,
        "fileCount": manifest.file_count,
        "totalBytes": manifest.total_bytes,
        "completedAt": completed_at,
        "packagedAt": manifest.packaged_at,
        "evidenceHeadSha256": evidence_head_sha256,
        "iat": int(issued_at.timestamp()),
        "iss": issuer,
    }


#: The delivery container's suffix: ``{the DSR's container}-pkg`` (61 characters at most).
DELIVERY_SUFFIX: Final = "-pkg"
#: The builder's own record in the delivery container, written last: a package is complete
#: exactly when it is there.
STATE_BLOB: Final = "package-state.json"


def delivery_container(request_id: str) -> str:
    """The DSR's delivery container: apart from the export container (which stays as Graph
    wrote it), deleted with it (its name starts with the DSR's container name)."""
    from dsr_export.domain.request import container_name

    return container_name(request_id) + DELIVERY_SUFFIX


#: The package orchestration and its instance ids: ``package~{requestId}`` (``~`` never occurs
#: in a request id, so a package's instance is never taken for a DSR's).
PACKAGE_ORCHESTRATOR: Final = "package_export"
PACKAGE_INSTANCE_PREFIX: Final = "package~"


def package_instance_id(request_id: str) -> str:
    """The package orchestration's instance id for a DSR (its canonical id)."""
    return PACKAGE_INSTANCE_PREFIX + request_id
