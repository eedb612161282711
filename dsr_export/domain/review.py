"""Review before release (``PACKAGE_REVIEW=required``): what a reviewer sees and decides.

The preview's data files are listed from its manifest (path, size, product, media type,
SHA-256); a reviewer withholds files by hash with a reason code (GDPR Art. 15(4): others'
rights; legal privilege; not the subject's data), then approves. Files are named by hash, not
by path, so the decision, the manifest's ``withheld`` and the evidence all say the same thing
without a file name (which may itself be personal data). Two files with the same content have
the same hash: withholding one withholds both, which is what the reviewer saw (one hash, one
content).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dsr_export.domain.package_manifest import WITHHELD_REASONS, Withheld
from dsr_export.domain.request import FieldError, InvalidRequest

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
#: At most this many distinct hashes withheld: what fits in the intake's 16 KiB body limit with
#: room to spare (an entry is about 100 bytes), so a schema-valid review is never refused as too
#: large. Withholding is by content hash, so one entry covers every copy of a file.
MAX_WITHHELD: Final = 100


@dataclass(frozen=True)
class ReviewFile:
    """One data file of the preview, as the manifest lists it."""

    path: str
    size: int
    sha256: str
    product: str | None
    media_type: str

    def to_dict(self) -> dict[str, Any]:
        """The wire form (the review document, the API)."""
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "product": self.product,
            "mediaType": self.media_type,
        }


@dataclass(frozen=True)
class Review:
    """The review of one package: the preview's files, what is withheld, whether approved."""

    preview_sha256: str
    files: tuple[ReviewFile, ...]
    withheld: tuple[Withheld, ...] = ()
    approved: bool = False
    approved_at: str | None = None
    reviewer: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_manifest(cls, manifest: Mapping[str, Any], preview_sha256: str) -> Review:
        """A fresh review of a preview from its ``manifest.json``: its data files only."""
        files = tuple(
            ReviewFile(
                str(item["path"]),
                int(item["size"]),
                str(item["sha256"]),
                item.get("product"),
                str(item.get("mediaType") or "application/octet-stream"),
            )
            for item in manifest.get("files") or ()
            if isinstance(item, Mapping) and item.get("role") == "data"
        )
        return cls(preview_sha256=preview_sha256, files=files)

    def to_dict(self) -> dict[str, Any]:
        """The stored document and the API's answer."""
        return {
            "previewSha256": self.preview_sha256,
            "files": [item.to_dict() for item in self.files],
            "withheld": [item.to_dict() for item in self.withheld],
            "approved": self.approved,
            "approvedAt": self.approved_at,
            "reviewer": dict(self.reviewer),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Review:
        """Read the stored document back."""
        return cls(
            preview_sha256=str(raw["previewSha256"]),
            files=tuple(
                ReviewFile(
                    str(f["path"]),
                    int(f["size"]),
                    str(f["sha256"]),
                    f.get("product"),
                    str(f.get("mediaType") or "application/octet-stream"),
                )
                for f in raw.get("files") or ()
            ),
            withheld=tuple(
                Withheld(str(w["sha256"]), str(w["reasonCode"])) for w in raw.get("withheld") or ()
            ),
            approved=bool(raw.get("approved")),
            approved_at=raw.get("approvedAt"),
            reviewer=dict(raw.get("reviewer") or {}),
        )

    def skipped_members(self) -> frozenset[str]:
        """The data members of the withheld files (what the final build leaves out)."""
        hashes = {item.sha256 for item in self.withheld}
        return frozenset(item.path for item in self.files if item.sha256 in hashes)

    def withheld_count(self) -> int:
        """How many files are withheld (files, not hashes: equal contents count each)."""
        return len(self.skipped_members())


@dataclass(frozen=True)
class ReviewAsk:
    """A reviewer's ``POST``: the files to withhold (None: unchanged) and whether to approve."""

    withhold: tuple[Withheld, ...] | None
    approve: bool

    @classmethod
    def parse(cls, payload: object, review: Review) -> ReviewAsk:
        """Validate against ``review``'s files, collecting every field error."""
        if not isinstance(payload, Mapping):
            raise InvalidRequest([FieldError("", "the body must be a JSON object")])
        errors: list[FieldError] = []
        approve = payload.get("approve", False)
        if not isinstance(approve, bool):
            errors.append(FieldError("/approve", "must be true or false"))
        raw = payload.get("withhold")
        withhold: list[Withheld] | None = None
        if raw is not None:
            if not isinstance(raw, list) or len(raw) > MAX_WITHHELD:
                errors.append(FieldError("/withhold", f"must be a list of at most {MAX_WITHHELD}"))
            else:
                withhold = _withheld(raw, review, errors)
        if errors:
            raise InvalidRequest(errors)
        return cls(None if withhold is None else tuple(withhold), bool(approve))


def _withheld(raw: list[object], review: Review, errors: list[FieldError]) -> list[Withheld]:
    known = {item.sha256 for item in review.files}
    reasons = ", ".join(sorted(WITHHELD_REASONS))
    chosen: dict[str, Withheld] = {}
    for index, entry in enumerate(raw):
        where = f"/withhold/{index}"
        if not isinstance(entry, Mapping):
            errors.append(FieldError(where, "must be an object with sha256 and reasonCode"))
            continue
        sha = entry.get("sha256")
        code = entry.get("reasonCode")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha.lower()):
            errors.append(FieldError(f"{where}/sha256", "must be 64 hexadecimal digits"))
        elif sha.lower() not in known:
            errors.append(
                FieldError(f"{where}/sha256", "is not the SHA-256 of a data file of the package")
            )
        if not isinstance(code, str) or code not in WITHHELD_REASONS:
            errors.append(FieldError(f"{where}/reasonCode", f"must be one of {reasons}"))
        if isinstance(sha, str) and isinstance(code, str):
            prior = chosen.get(sha.lower())
            if prior is not None and prior.reason_code != code:
                errors.append(FieldError(f"{where}/sha256", "is given twice with two reasons"))
            chosen[sha.lower()] = Withheld(sha.lower(), code)
    return sorted(chosen.values(), key=lambda item: item.sha256)
