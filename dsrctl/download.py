"""``dsrctl download ID --to FOLDER``: fetch a finished export and prove it is whole.

The API hands out a short-lived container SAS URL (read and list); this module lists the
container through azure-storage-blob's ``ContainerClient.from_container_url``, downloads every
blob into the folder (names with ``/`` become sub-folders) and checks each one against
``manifest.json``, which the service wrote when the export finished: the blob's size, and its
MD5 where Graph gave one. A file already in the folder with the right size and MD5 is kept (so
an interrupted download can simply be run again). Verification fails for a blob of the manifest
that is missing or differs, and for a blob the manifest does not list (besides the service's
own ``manifest.json`` and ``audit.json``).

The URL is a secret: it is never printed, logged or written anywhere; errors are scrubbed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal, Protocol

from dsrctl.client import scrub

MANIFEST: Final = "manifest.json"
#: What the service itself writes beside the export (not listed in the manifest).
SERVICE_BLOBS: Final = frozenset({MANIFEST, "audit.json"})
_PART: Final = ".part"


class DownloadFailed(Exception):
    """Storage refused or could not be reached; the message holds no URL or signature."""


@dataclass(frozen=True)
class RemoteBlob:
    """A blob as listed: name, size and its Content-MD5 (base64), when it has one."""

    name: str
    size: int
    md5: str | None = None


class BlobSource(Protocol):
    """What the download needs of a container (the SDK's client, or a test's fake)."""

    def list(self) -> list[RemoteBlob]: ...

    def chunks(self, name: str) -> Iterator[bytes]: ...


class ContainerSource:
    """A container behind a SAS URL, through azure-storage-blob."""

    def __init__(self, url: str, *, verify: bool | str = True) -> None:
        from azure.storage.blob import ContainerClient

        # No redirects: the storage never sends one, and the link's signature stays with it.
        self._client = ContainerClient.from_container_url(
            url, connection_verify=verify, permit_redirects=False
        )
        self._url = url

    def list(self) -> list[RemoteBlob]:
        listed: list[RemoteBlob] = []
        with self._errors():
            for blob in self._client.list_blobs():
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                encoded = base64.b64encode(bytes(md5)).decode() if md5 else None
                listed.append(RemoteBlob(blob.name, int(blob.size or 0), encoded))
        return listed

    def chunks(self, name: str) -> Iterator[bytes]:
        with self._errors():
            yield from self._client.download_blob(name).chunks()

    def _errors(self) -> _StorageErrors:
        return _StorageErrors(self._url)


class _StorageErrors:
    """Turns the SDK's errors into :class:`DownloadFailed` with a scrubbed, short message."""

    def __init__(self, url: str) -> None:
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> Literal[False]:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        if exc is None or not isinstance(exc, AzureError):
            return False
        if isinstance(exc, ClientAuthenticationError):
            why = "storage refused the download link (expired? run download again)"
        elif isinstance(exc, ResourceNotFoundError):
            why = "the export is no longer in storage (erased, or removed by retention?)"
        elif isinstance(exc, ServiceRequestError):
            why = "cannot reach the export storage"
        elif isinstance(exc, HttpResponseError) and exc.status_code == 403:
            why = "storage refused the download link (expired? run download again)"
        elif isinstance(exc, HttpResponseError) and 300 <= (exc.status_code or 0) < 400:
            why = f"the export storage answered a redirect ({exc.status_code}): not followed"
        else:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            why = f"storage error: {first}"
        raise DownloadFailed(scrub(why.replace(self._url, "<download link>"))) from None


def open_container(url: str, *, verify: bool | str = True) -> BlobSource:
    """The container behind the download link (tests swap this for a fake)."""
    return ContainerSource(url, verify=verify)


@dataclass(frozen=True)
class BlobCheck:
    """One blob's verification: ``problem`` is None when it matches the manifest."""

    name: str
    size: int
    problem: str | None = None
    kept: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "size": self.size, "ok": self.ok}
        if self.problem:
            body["problem"] = self.problem
        if self.kept:
            body["kept"] = True
        return body


@dataclass
class Report:
    """What was downloaded where, and whether all of it matches the manifest."""

    folder: Path
    checks: list[BlobCheck] = field(default_factory=list)
    manifest_problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.manifest_problem is None and all(check.ok for check in self.checks)

    @property
    def total_bytes(self) -> int:
        return sum(check.size for check in self.checks)

    def summary(self) -> str:
        files = len(self.checks)
        bad = sum(1 for check in self.checks if not check.ok)
        text = f"{files} file{'' if files == 1 else 's'}, {self.total_bytes} bytes in {self.folder}"
        if self.ok:
            return f"verified against {MANIFEST}: {text}"
        if self.manifest_problem:
            return f"NOT VERIFIED: {self.manifest_problem} ({text})"
        return f"NOT VERIFIED: {bad} of {files} file(s) do not match {MANIFEST} ({text})"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "folder": str(self.folder),
            "ok": self.ok,
            "files": [check.to_dict() for check in self.checks],
            "totalBytes": self.total_bytes,
        }
        if self.manifest_problem:
            body["manifestProblem"] = self.manifest_problem
        return body


@dataclass(frozen=True)
class _Expected:
    size: int | None
    md5: str | None


def local_path(folder: Path, name: str) -> Path | None:
    """Where blob ``name`` goes in ``folder``; None for a name that would leave it."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("", ".", "..") for part in parts) or name.endswith(_PART):
        return None
    target = folder.joinpath(*parts)
    try:
        target.resolve().relative_to(folder.resolve())
    except ValueError:
        return None
    return target


def _md5_b64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def parse_manifest(raw: bytes) -> dict[str, _Expected]:
    """The manifest's ``blobs`` by name; ValueError when it is not a manifest."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValueError(f"{MANIFEST} is not JSON") from None
    blobs = document.get("blobs") if isinstance(document, dict) else None
    if not isinstance(blobs, list):
        raise ValueError(f"{MANIFEST} has no list of blobs")
    expected: dict[str, _Expected] = {}
    for entry in blobs:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{MANIFEST} lists a blob without a name")
        size, md5 = entry.get("size"), entry.get("md5")
        expected[entry["name"]] = _Expected(
            size if isinstance(size, int) and not isinstance(size, bool) else None,
            md5 if isinstance(md5, str) and md5 else None,
        )
    return expected


def download_all(
    source: BlobSource,
    folder: Path,
    *,
    on_start: Callable[[int, int], None] = lambda files, total: None,
    on_bytes: Callable[[int], None] = lambda count: None,
    on_blob: Callable[[BlobCheck], None] = lambda check: None,
) -> Report:
    """Download every blob of ``source`` into ``folder`` and verify it against the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = sorted(source.list(), key=lambda blob: (blob.name != MANIFEST, blob.name))
    on_start(len(blobs), sum(blob.size for blob in blobs))
    report = Report(folder)
    expected: Mapping[str, _Expected] = {}
    if not any(blob.name == MANIFEST for blob in blobs):
        report.manifest_problem = f"the container has no {MANIFEST}: nothing to verify against"
    for blob in blobs:
        check = _fetch(source, folder, blob, expected.get(blob.name), on_bytes)
        if blob.name == MANIFEST and check.ok:
            try:
                expected = parse_manifest((folder / MANIFEST).read_bytes())
            except ValueError as exc:
                report.manifest_problem = str(exc)
        elif check.ok and not report.manifest_problem:
            check = _judge(check, blob, expected)
        report.checks.append(check)
        on_blob(check)
    listed = {blob.name for blob in blobs}
    for name in sorted(set(expected) - listed):
        missing = BlobCheck(name, 0, "in the manifest but not in the container")
        report.checks.append(missing)
        on_blob(missing)
    return report


def _judge(check: BlobCheck, blob: RemoteBlob, expected: Mapping[str, _Expected]) -> BlobCheck:
    if blob.name in SERVICE_BLOBS:
        return check
    if blob.name not in expected:
        return BlobCheck(check.name, check.size, f"not listed in {MANIFEST} (unverified)")
    return check


def _fetch(
    source: BlobSource,
    folder: Path,
    blob: RemoteBlob,
    wanted: _Expected | None,
    on_bytes: Callable[[int], None],
) -> BlobCheck:
    target = local_path(folder, blob.name)
    if target is None:
        on_bytes(blob.size)
        return BlobCheck(blob.name, 0, "a blob name that would leave the folder: not written")
    md5 = (wanted.md5 if wanted else None) or blob.md5
    if target.is_file() and target.stat().st_size == blob.size and md5 and _md5_b64(target) == md5:
        on_bytes(blob.size)
        return BlobCheck(blob.name, blob.size, kept=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + _PART)
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    try:
        with part.open("wb") as stream:
            for chunk in source.chunks(blob.name):
                stream.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                on_bytes(len(chunk))
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    got = base64.b64encode(digest.digest()).decode()
    if wanted is not None and wanted.size is not None and wanted.size != written:
        return BlobCheck(blob.name, written, f"size {written}, the manifest says {wanted.size}")
    if md5 and got != md5:
        return BlobCheck(blob.name, written, f"MD5 {got}, expected {md5}")
    return BlobCheck(blob.name, written)
