"""``dsrctl download ID --to FOLDER``: fetch a finished export and prove it is whole.

The API hands out a short-lived container SAS URL (read and list); this module lists the
container through azure-storage-blob's ``ContainerClient.from_container_url``, downloads every
blob into the folder (names with ``/`` become sub-folders) and checks each one against
``manifest.json``, which the service wrote when the export finished: the blob's size, and its
MD5 where Graph gave one. A file already in the folder with the right size and MD5 is kept (so
an interrupted download can simply be run again). Verification fails for a blob of the manifest
that is missing or differs, and for a blob the manifest does not list (besides the service's
own ``manifest.json`` and ``audit.json``).

Each blob gets a file of its own or none. Blob names are any text, local paths are not: ``a//b``
and ``a/b``, ``x/`` and ``x``, ``./x`` and ``x`` would be one file, and on a file system that
ignores case (or Unicode normalisation) so would ``A`` and ``a``. So a name with an empty,
``.`` or ``..`` part (or absolute, with a backslash or NUL) is refused before anything is
fetched, and a name whose file is already another blob's in this run, whose folder is another
blob's file (``a`` beside ``a/b``), or that the file system will not take (too long, not a valid
name there) is refused when it comes: each refusal is that blob's check, named, the rest still
downloads, and nothing is written over a file already checked. The manifest comes first, then
the blobs it lists, then the others, so an unlisted blob can never take a listed one's place.
Bytes go to a temporary file that is created new (``O_EXCL``) beside the target and renamed
over it only when complete.

The URL is a secret: it is never printed, logged or written anywhere; errors are scrubbed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from dsrctl.client import scrub

MANIFEST: Final = "manifest.json"
#: What the service itself writes beside the export (not listed in the manifest).
SERVICE_BLOBS: Final = frozenset({MANIFEST, "audit.json"})
_PART: Final = ".part"
BLOB_GONE: Final = "no longer in storage (deleted after the listing)"


class DownloadFailed(Exception):
    """Storage refused or could not be reached; the message holds no URL or signature."""


class BlobGone(DownloadFailed):
    """One blob of the listing is no longer in storage (the container still is)."""


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
        with _StorageErrors(self._url, blob=True):
            yield from self._client.download_blob(name).chunks()

    def _errors(self) -> _StorageErrors:
        return _StorageErrors(self._url)


class _StorageErrors:
    """Turns the SDK's errors into :class:`DownloadFailed` with a scrubbed, short message."""

    def __init__(self, url: str, *, blob: bool = False) -> None:
        self._url = url
        self._blob = blob

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
        if self._blob and getattr(exc, "error_code", None) == "BlobNotFound":
            raise BlobGone(BLOB_GONE) from None
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


def refusal(name: str) -> str | None:
    """Why blob ``name`` gets no file, whatever the folder holds (None: it may). A name whose
    parts are not each a plain file name would leave the folder, or be the file of another name
    (``a//b`` is ``a/b``'s, ``x/`` is ``x``'s, ``./x`` is ``x``'s; and storage may not even
    serve ``./x`` under that name)."""
    if not name:
        return "an empty name"
    if "\x00" in name:
        return "a NUL character in the name"
    if "\\" in name:
        return "a backslash in the name (a folder separator on Windows)"
    if name.startswith("/"):
        return "an absolute name"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' part would leave the folder"
    if "" in parts:
        return "an empty part (a//b, x/): it would be the file of another name"
    if "." in parts:
        return "a '.' part (./x, a/./b): it would be the file of another name"
    return None


def local_path(folder: Path, name: str) -> Path | None:
    """Where blob ``name`` goes in ``folder``; None for a name :func:`refusal` refuses or one
    that would leave the folder through a link already in it."""
    if refusal(name) is not None:
        return None
    target = folder.joinpath(*name.split("/"))
    try:
        target.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):  # outside; or a link loop, or a name too long
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
    """Download every blob of ``source`` into ``folder`` and verify it against the manifest;
    a blob that cannot have a file of its own is refused in its check (see the module)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadFailed(f"cannot create the folder: {exc.strerror or exc}") from None
    blobs = source.list()
    on_start(len(blobs), sum(blob.size for blob in blobs))
    report = Report(folder)
    expected: Mapping[str, _Expected] = {}
    written = _Written()
    manifests = [blob for blob in blobs if blob.name == MANIFEST]
    if not manifests:
        report.manifest_problem = f"the container has no {MANIFEST}: nothing to verify against"
    for blob in manifests:
        check = _fetch(source, folder, blob, None, on_bytes, written)
        if check.ok:
            try:
                expected = parse_manifest((folder / MANIFEST).read_bytes())
            except ValueError as exc:
                report.manifest_problem = str(exc)
        report.checks.append(check)
        on_blob(check)
    listed = set(expected) | SERVICE_BLOBS
    rest = sorted(
        (blob for blob in blobs if blob.name != MANIFEST),
        key=lambda blob: (blob.name not in listed, blob.name),
    )
    for blob in rest:
        check = _fetch(source, folder, blob, expected.get(blob.name), on_bytes, written)
        if check.ok and not report.manifest_problem:
            check = _judge(check, blob, expected)
        report.checks.append(check)
        on_blob(check)
    names = {blob.name for blob in blobs}
    for name in sorted(set(expected) - names):
        missing = BlobCheck(name, 0, "in the manifest but not in the container")
        report.checks.append(missing)
        on_blob(missing)
    return report


class _Written:
    """The files this run wrote or kept, by identity (device and inode), with the blob's name:
    two names that reach one file (by a link, by case, by normalisation) are seen as one."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], str] = {}

    def owner(self, path: Path) -> str | None:
        try:
            found = path.stat()
        except FileNotFoundError:
            return None
        return self._files.get((found.st_dev, found.st_ino))

    def add(self, path: Path, name: str) -> None:
        found = path.stat()
        self._files[(found.st_dev, found.st_ino)] = name


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
    written: _Written,
) -> BlobCheck:
    """One blob into its own file, or its refusal (the bytes it will not send counted as done,
    so that a progress bar still ends at its total)."""
    sent = 0

    def counted(count: int) -> None:
        nonlocal sent
        sent += count
        on_bytes(count)

    target = local_path(folder, blob.name)
    if target is None:
        why = refusal(blob.name) or "it would leave the folder through a link"
        check = BlobCheck(blob.name, 0, f"not written: {why}")
    else:
        try:
            check = _write(source, folder, target, blob, wanted, counted, written)
        except BlobGone:
            check = BlobCheck(blob.name, 0, BLOB_GONE)
        except OSError as exc:  # the file system will not take this name (or this file)
            check = BlobCheck(blob.name, 0, f"not written: {exc.strerror or type(exc).__name__}")
    if not check.ok and sent < blob.size:
        on_bytes(blob.size - sent)
    return check


def _blocked(folder: Path, target: Path, written: _Written) -> str | None:
    """Why ``target`` may not be written for ``blob`` (None: it may)."""
    for parent in reversed(target.relative_to(folder).parents[:-1]):
        if (folder / parent).exists() and not (folder / parent).is_dir():
            return f"its folder {parent.as_posix()} is another blob's file"
    if target.is_dir():
        return "a folder of that name holds other blobs"
    other = written.owner(target)
    if other is not None:
        return f"its file is already {other}'s"
    return None


def _write(
    source: BlobSource,
    folder: Path,
    target: Path,
    blob: RemoteBlob,
    wanted: _Expected | None,
    on_bytes: Callable[[int], None],
    written: _Written,
) -> BlobCheck:
    blocked = _blocked(folder, target, written)
    if blocked is not None:
        return BlobCheck(blob.name, 0, f"not written: {blocked}")
    md5 = (wanted.md5 if wanted else None) or blob.md5
    if target.is_file() and target.stat().st_size == blob.size and md5 and _md5_b64(target) == md5:
        on_bytes(blob.size)
        written.add(target, blob.name)
        return BlobCheck(blob.name, blob.size, kept=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, part_name = tempfile.mkstemp(prefix=".dsrctl-", suffix=_PART, dir=target.parent)
    part = Path(part_name)
    digest = hashlib.md5(usedforsecurity=False)
    count = 0
    try:
        with os.fdopen(handle, "wb") as stream:
            for chunk in source.chunks(blob.name):
                stream.write(chunk)
                digest.update(chunk)
                count += len(chunk)
                on_bytes(len(chunk))
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    written.add(target, blob.name)
    got = base64.b64encode(digest.digest()).decode()
    if wanted is not None and wanted.size is not None and wanted.size != count:
        return BlobCheck(blob.name, count, f"size {count}, the manifest says {wanted.size}")
    if md5 and got != md5:
        return BlobCheck(blob.name, count, f"MD5 {got}, expected {md5}")
    return BlobCheck(blob.name, count)


@dataclass(frozen=True)
class PartFetch:
    """One package part saved: its size, SHA-256, and what is wrong (None: it matches)."""

    name: str
    size: int
    sha256: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"part": self.name, "size": self.size, "sha256": self.sha256}
        body["ok"] = self.ok
        if self.problem:
            body["problem"] = self.problem
        return body


def fetch_part(
    url: str, folder: Path, name: str, expected: str | None, *, verify: bool | str = True
) -> PartFetch:
    """Stream one part (its read-only link) to ``folder/name``, hashing as it goes; a name
    that is not a plain file name is refused (the service names parts, but a name is data)."""
    import requests

    if not name or Path(name).name != name or name.startswith("."):
        return PartFetch(name, 0, "", "not a plain file name: not saved")
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    target = folder / name
    try:
        with requests.get(url, stream=True, timeout=60, verify=verify) as answer:
            if answer.status_code != 200:
                return PartFetch(name, 0, "", f"the link answered {answer.status_code}")
            with target.open("wb") as handle:
                for chunk in answer.iter_content(1024 * 1024):
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    except requests.RequestException as exc:
        return PartFetch(name, size, "", scrub(str(exc)))
    found = digest.hexdigest()
    if expected and found != expected.lower():
        return PartFetch(name, size, found, f"its SHA-256 is {found}, the service said {expected}")
    return PartFetch(name, size, found)
