"""Builds the subject's package: from the DSR's export container to one ZIP (or numbered parts)
in a delivery container of its own, streamed end to end.

Nothing of the export is held whole, in memory or on local disk: each blob is read in chunks
and written as a ZIP member into a block blob that is uploaded block by block (``zipfile`` on an
unseekable writer: data descriptors, ZIP64 where a member or the archive needs it); only a file
small enough to be shown on a page (``render_max_bytes``) is kept while its page is rendered,
and a ``.zip`` of the export is listed through ranged reads of its directory. The export
container is only read (conditional on the ETags listed at the start): it stays as Graph wrote
it.

Four kinds of thread share the work so that packaging keeps pace with a plain copy of the same
blobs (``make bench``): reader threads fetch ranges ahead (:class:`ReadAhead`), the zip thread
writes the members in order (deflate, CRC and hashes release the GIL), the builder's thread
renders the page of the file before meanwhile, and an uploader stages the previous block.

Idempotent and resumable: the package is complete exactly when ``package-state.json`` is in the
delivery container (written last); a second run answers it, a run after a crash deletes what
the first left and builds again from scratch. An export that no longer matches the
``manifest.json`` finalisation stored (a blob added, removed or altered) stops the build with
:class:`ExportChanged`; nothing is packaged from data that is not what completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Final, ParamSpec, Protocol, TypeVar, cast

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
)
from isal import isal_zlib

from dsr_export.adapters.storage import LEGACY_AUDIT_BLOB, MANIFEST_BLOB
from dsr_export.domain import archive
from dsr_export.domain.organisation import OrganisationProfile
from dsr_export.domain.package_manifest import (
    COMPRESSED_TYPES,
    INDEX_MEMBER,
    MANIFEST_MEMBER,
    README_MEMBER,
    RECEIPT_MEMBER,
    STATE_BLOB,
    PackageFile,
    Withheld,
    data_member,
    delivery_container,
    file_page,
    manifest_of,
    media_type,
    part_names,
    product_of,
    receipt_claims,
)
from dsr_export.rendering.render import Facts, FileEntry, ProductEntry, Renderer, product_entry
from dsr_export.rendering.views import FileView, view_of

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: The package's manifest, copied beside its parts (the same bytes as its ``manifest.json``).
MANIFEST_COPY_BLOB: Final = "package-manifest.json"
#: The review of the package (``dsr_export.adapters.package_review``): a rebuild keeps it.
REVIEW_BLOB: Final = "package-review.json"
KEPT_BLOBS: Final = frozenset({REVIEW_BLOB})
#: Blocks staged per upload call: large enough for throughput, small enough for memory.
BLOCK_BYTES: Final = 4 * 1024 * 1024
#: Each blob of the export is read in ranges of this size (one request each: fewer, larger
#: ranges move more bytes per round trip; memory is bounded by READ_AHEAD of them).
READ_BYTES: Final = 1024 * 1024
#: Ranges requested ahead of the one being zipped (across blobs), and at most this many bytes
#: of them: the network waits overlap with compressing and hashing, many small blobs are on
#: their way at once, and a large blob holds a few ranges only. Peak memory: about
#: READ_AHEAD_BYTES + 2 ranges.
READ_AHEAD: Final = 8
READ_AHEAD_BYTES: Final = 2 * READ_BYTES
#: Threads reading those ranges at once: most blobs are small, a round trip each, and a plain
#: copy's one-at-a-time downloads wait on every one of them (make bench).
READERS: Final = 3
#: Blocks being uploaded while the next fills (one uploader thread).
STAGE_AHEAD: Final = 1
#: Deflate level of the members that are compressed, in ISA-L's deflate (``isal``): 1 shrinks
#: JSON as much as zlib's level 1 at several times its speed (zlib's deflate was two thirds of
#: the CPU packaging took; make bench). The output is plain deflate: any unzip reads it.
DEFLATE_LEVEL: Final = 1
#: Ranged reads of a zip's directory are cached in blocks of this size.
RANGE_BYTES: Final = 256 * 1024


class PackageSigner(Protocol):
    """What seals a package (receipt19's ``dsr_export.adapters.receipt_signer``): the receipt's
    claims in, a compact JWS (ES256) out."""

    def sign_receipt(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims``; raise when the key cannot sign (the fix named in the message)."""
        ...


class ExportChanged(RuntimeError):
    """The export container no longer holds what completed; counts only (names may be
    personal data)."""

    def __init__(self, added: int, removed: int, altered: int) -> None:
        super().__init__(
            f"the export changed after it completed: {added} added, {removed} removed, "
            f"{altered} altered; it is not packaged (see the evidence)"
        )
        self.added, self.removed, self.altered = added, removed, altered


class NoExportManifest(RuntimeError):
    """The export container has no ``manifest.json``: the export did not complete, or its data
    was erased."""


@dataclass(frozen=True)
class PackageOptions:
    """How a package is built: where a split starts, what is shown on a page, the zip limits,
    and the receipt's issuer."""

    part_bytes: int = 4 * 1024**3
    render_max_bytes: int = 2 * 1024**2
    issuer: str = "dsr-export"
    limits: archive.ArchiveLimits = field(default_factory=archive.ArchiveLimits)


@dataclass(frozen=True)
class PackageJob:
    """One DSR's package: its container and the facts the first page shows."""

    request_id: str
    container: str
    language: str
    facts: Facts
    generation: int = 1
    #: Files a reviewer withheld (hash and reason code: what the manifest and evidence say)...
    withheld: tuple[Withheld, ...] = ()
    #: ... and their data members in the preview (left out of this build).
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PackageResult:
    """A finished package, as ``package-state.json`` records it (no names of files)."""

    container: str
    parts: tuple[dict[str, Any], ...]
    package_sha256: str
    manifest_sha256: str
    export_manifest_sha256: str
    file_count: int
    total_bytes: int
    packaged_at: str
    generation: int
    language: str
    reused: bool = False
    #: The files withheld by review (``{"sha256", "reasonCode"}``); empty: nothing withheld.
    withheld: tuple[dict[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The state document (and the activity's result)."""
        return {
            "state": "complete",
            "container": self.container,
            "parts": list(self.parts),
            "packageSha256": self.package_sha256,
            "manifestSha256": self.manifest_sha256,
            "exportManifestSha256": self.export_manifest_sha256,
            "fileCount": self.file_count,
            "totalBytes": self.total_bytes,
            "packagedAt": self.packaged_at,
            "generation": self.generation,
            "language": self.language,
            "withheld": [dict(item) for item in self.withheld],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, reused: bool = False) -> PackageResult:
        """Read a state document back."""
        return cls(
            container=str(raw["container"]),
            parts=tuple(dict(part) for part in raw["parts"]),
            package_sha256=str(raw["packageSha256"]),
            manifest_sha256=str(raw["manifestSha256"]),
            export_manifest_sha256=str(raw["exportManifestSha256"]),
            file_count=int(raw["fileCount"]),
            total_bytes=int(raw["totalBytes"]),
            packaged_at=str(raw["packagedAt"]),
            generation=int(raw.get("generation") or 1),
            language=str(raw.get("language") or "en"),
            reused=reused,
            withheld=tuple(
                {"sha256": str(item["sha256"]), "reasonCode": str(item["reasonCode"])}
                for item in raw.get("withheld") or ()
            ),
        )


class BlockBlobWriter:
    """A write-only, unseekable file over a block blob: ``write`` stages 4 MiB blocks as they
    fill, :meth:`commit` commits them. Also hashes what passes (the part's SHA-256) and feeds
    the running hash of the whole package (none for a package of one part: its hash is the
    part's, and the bytes are hashed once)."""

    def __init__(
        self, blob: BlobClient, package_hash: Any | None, block_bytes: int = BLOCK_BYTES
    ) -> None:
        self._blob, self._package_hash = blob, package_hash
        self._block_bytes = block_bytes
        self._pieces: list[memoryview] = []
        self._filled = 0
        self._blocks: list[BlobBlock] = []
        self._position = 0
        self.sha256 = hashlib.sha256()
        # Blocks upload on one thread while the next fills; at most STAGE_AHEAD in flight.
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-block")
        self._pending: deque[Future[Any]] = deque()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = len(data)
        self._position += size
        self.sha256.update(data)
        if self._package_hash is not None:
            self._package_hash.update(data)
        # A block is joined once from views of what was written (bytes are immutable, so a
        # view is safe to keep; a mutable buffer the caller may reuse is copied first): each
        # byte is copied once on its way to a block, not into, out of and along a buffer.
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        while view:
            room = self._block_bytes - self._filled
            piece, view = view[:room], view[room:]
            self._pieces.append(piece)
            self._filled += len(piece)
            if self._filled == self._block_bytes:
                self._stage(self._take())
        return size

    def _take(self) -> bytes:
        block = b"".join(self._pieces)
        self._pieces.clear()
        self._filled = 0
        return block

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Blocks are staged when full; nothing to do before :meth:`commit`."""

    def _stage(self, block: bytes) -> None:
        block_id = f"{len(self._blocks):08d}".encode().hex()
        while len(self._pending) >= STAGE_AHEAD:
            self._pending.popleft().result()  # an upload's error surfaces here
        self._pending.append(self._uploader.submit(self._blob.stage_block, block_id, block))
        self._blocks.append(BlobBlock(block_id=block_id))

    def _drain(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._uploader.shutdown(wait=True, cancel_futures=True)

    def commit(self) -> int:
        """Stage the rest, wait for every block, and commit the blob; its size."""
        if self._pieces:
            self._stage(self._take())
        self._drain()
        self._blob.commit_block_list(
            self._blocks, content_settings=ContentSettings(content_type="application/zip")
        )
        return self._position


class RangeReader(io.RawIOBase):
    """A read-only, seekable view of one blob through ranged reads (a zip's directory is at its
    end), pinned to the ETag listed at the start."""

    def __init__(self, blob: BlobClient, size: int, etag: str | None) -> None:
        self._blob, self._size, self._etag = blob, size, etag
        self._position = 0
        self._cache: dict[int, bytes] = {}

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def _block(self, index: int) -> bytes:
        if index not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            start = index * RANGE_BYTES
            length = min(RANGE_BYTES, self._size - start)
            kwargs: dict[str, Any] = {}
            if self._etag:
                kwargs = {"etag": self._etag, "match_condition": MatchConditions.IfNotModified}
            self._cache[index] = self._blob.download_blob(
                offset=start, length=length, **kwargs
            ).readall()
        return self._cache[index]

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        out = bytearray()
        while self._position < end:
            index, offset = divmod(self._position, RANGE_BYTES)
            block = self._block(index)[offset : offset + end - self._position]
            if not block:
                break
            out += block
            self._position += len(block)
        return bytes(out)


def _part_names_for(listed: list[_ExportBlob], part_bytes: int) -> list[str]:
    """The names the package may use: one zip, or as many parts as the data needs plus one,
    since the pages and the manifest go last."""
    total = sum(item.size for item in listed)
    count = max(1, -(-total // part_bytes)) if total > part_bytes else 1
    return part_names(count + 1 if count > 1 else 1)


@dataclass(frozen=True)
class _SealTimes:
    """The moments the receipt states: packaged (now), the export's completion, and the head of
    the evidence chain it is bound to."""

    now: datetime
    completed_at: str | None
    evidence_head: str | None


@dataclass
class _ExportBlob:
    name: str
    size: int
    etag: str | None
    md5: str | None
    last_modified: str | None


@dataclass
class _Parts:
    """The zip being written: one part, or the next part once the current one is full."""

    container: ContainerClient
    names: list[str]
    part_bytes: int
    package_hash: Any = field(default_factory=hashlib.sha256)
    done: list[dict[str, Any]] = field(default_factory=list)
    writer: BlockBlobWriter | None = None
    zip: zipfile.ZipFile | None = None
    members: int = 0

    def current(self) -> zipfile.ZipFile:
        if self.zip is None:
            name = self.names[len(self.done)]
            whole = self.package_hash if len(self.names) > 1 else None
            self.writer = BlockBlobWriter(self.container.get_blob_client(name), whole)
            self.zip = zipfile.ZipFile(self.writer, "w", allowZip64=True)  # type: ignore[call-overload]
            self.members = 0
        return self.zip

    def roll_if_full(self) -> None:
        """Close the part when it is over the size (never empty; never past the last name)."""
        if (
            self.writer is not None
            and self.members
            and self.writer.tell() >= self.part_bytes
            and len(self.done) + 1 < len(self.names)
        ):
            self.close()

    def package_sha256(self) -> str:
        """The SHA-256 of all the parts' bytes, in order (of one part: the part's)."""
        if len(self.done) == 1 and len(self.names) == 1:
            return str(self.done[0]["sha256"])
        return str(self.package_hash.hexdigest())

    def close(self) -> None:
        if self.zip is None or self.writer is None:
            return
        self.zip.close()
        size = self.writer.commit()
        self.done.append(
            {
                "name": self.names[len(self.done)],
                "size": size,
                "sha256": self.writer.sha256.hexdigest(),
            }
        )
        self.zip, self.writer = None, None

    def open(self, name: str, size: int, mtype: str) -> IO[bytes]:
        self.roll_if_full()
        archive_ = self.current()
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = (
            zipfile.ZIP_STORED if mtype in COMPRESSED_TYPES else zipfile.ZIP_DEFLATED
        )
        info.file_size = size
        info.external_attr = 0o644 << 16
        self.members += 1
        handle = archive_.open(info, "w", force_zip64=size > 2**31)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            # zipfile's writer deflates through whatever compressor it holds, and has written
            # nothing yet: ISA-L's raw deflate (wbits -15, as zipfile's own) in place of zlib's.
            handle._compressor = isal_zlib.compressobj(  # type: ignore[attr-defined]
                DEFLATE_LEVEL, isal_zlib.DEFLATED, -15
            )
        return handle

    def add(self, name: str, content: bytes, mtype: str) -> PackageFile:
        with self.open(name, len(content), mtype) as handle:
            handle.write(content)
        return PackageFile(
            name, len(content), hashlib.sha256(content).hexdigest(), mtype, None, "page"
        )


class PackageBuilder:
    """Builds and finds packages in the delivery containers of one account."""

    def __init__(
        self,
        service: BlobServiceClient,
        organisation: OrganisationProfile,
        options: PackageOptions = PackageOptions(),
    ) -> None:
        self._service, self._organisation = service, organisation
        self._options = options

    def find(self, request_id: str) -> PackageResult | None:
        """The finished package of a DSR, or None (none built, or a build that did not end)."""
        blob = self._service.get_container_client(delivery_container(request_id)).get_blob_client(
            STATE_BLOB
        )
        try:
            raw = json.loads(blob.download_blob().readall())
        except (ResourceNotFoundError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("state") != "complete":
            return None
        return PackageResult.from_dict(raw, reused=True)

    def build(
        self,
        job: PackageJob,
        signer: PackageSigner,
        *,
        now: datetime,
        completed_at: str | None,
        evidence_head: str | None,
    ) -> PackageResult:
        """Build the package, sealed by ``signer`` (or answer the one already built from the
        same export; nothing is signed then)."""
        export = self._service.get_container_client(job.container)
        export_manifest, export_sha = self._export_manifest(export)
        withheld = tuple(item.to_dict() for item in job.withheld)
        found = self.find(job.request_id)
        if found is not None and (found.export_manifest_sha256, found.withheld) == (
            export_sha,
            withheld,
        ):
            return found
        listed = self._check_unchanged(export, export_manifest)
        listed = [item for item in listed if data_member(item.name) not in job.skip]
        delivery = self._fresh_delivery(job.request_id)
        parts = _Parts(
            delivery, _part_names_for(listed, self._options.part_bytes), self._options.part_bytes
        )
        renderer = Renderer(job.language, self._organisation, job.facts)
        files, products = self._write_data(export, listed, parts, renderer, job.language)
        times = _SealTimes(now=now, completed_at=completed_at, evidence_head=evidence_head)
        manifest, manifest_bytes = self._seal(job, signer, parts, renderer, files, products, times)
        result = PackageResult(
            container=delivery.container_name,
            parts=tuple(parts.done),
            package_sha256=parts.package_sha256(),
            manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            export_manifest_sha256=export_sha,
            file_count=manifest.file_count,
            total_bytes=manifest.total_bytes,
            packaged_at=manifest.packaged_at,
            generation=job.generation,
            language=job.language,
            withheld=withheld,
        )
        self._save_state(delivery, manifest_bytes, result)
        return result

    def _seal(
        self,
        job: PackageJob,
        signer: PackageSigner,
        parts: _Parts,
        renderer: Renderer,
        files: list[PackageFile],
        products: dict[str, ProductEntry],
        times: _SealTimes,
    ) -> tuple[Any, bytes]:
        """The pages, the index, the README, the manifest and the signed receipt, written last
        into the part being written (no more parts after them): the receipt covers them all."""
        for product in products.values():
            files.append(
                _page(
                    parts.add(product.page, renderer.product_page(product), "text/html"),
                    product.name,
                )
            )
        ordered = sorted(products.values(), key=lambda p: (p.name == "RequestInfo", p.name.lower()))
        parts.names = parts.names[: len(parts.done) + 1]
        used_names = list(parts.names)
        codes, count = [item.reason_code for item in job.withheld], len(job.withheld)
        index = renderer.index(ordered, used_names, codes, count)
        files.append(_role(parts.add(INDEX_MEMBER, index, "text/html"), "index"))
        readme = renderer.readme(ordered, used_names, codes, count)
        files.append(_role(parts.add(README_MEMBER, readme, "text/plain"), "readme"))
        manifest = manifest_of(
            job.request_id, job.generation, times.now, files, used_names, withheld=job.withheld
        )
        manifest_bytes = manifest.to_bytes()
        claims = receipt_claims(
            manifest,
            hashlib.sha256(manifest_bytes).hexdigest(),
            completed_at=times.completed_at,
            evidence_head_sha256=times.evidence_head,
            issued_at=times.now,
            issuer=self._options.issuer,
        )
        receipt = signer.sign_receipt(claims).encode("ascii")
        parts.add(MANIFEST_MEMBER, manifest_bytes, "application/json")
        parts.add(RECEIPT_MEMBER, receipt, "application/jose")
        parts.close()
        return manifest, manifest_bytes

    @staticmethod
    def _save_state(
        delivery: ContainerClient, manifest_bytes: bytes, result: PackageResult
    ) -> None:
        """A copy of the manifest beside the parts (what a reviewer lists, without opening a
        zip), then the state blob that marks the package complete: written last, so a build
        killed before it is built again rather than answered."""
        delivery.upload_blob(
            MANIFEST_COPY_BLOB,
            manifest_bytes,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        delivery.upload_blob(
            STATE_BLOB,
            json.dumps(result.to_dict(), indent=2, sort_keys=True).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    # -- the export, as it completed ---------------------------------------------------------
    @staticmethod
    def _export_manifest(export: ContainerClient) -> tuple[dict[str, Any], str]:
        try:
            content = export.get_blob_client(MANIFEST_BLOB).download_blob().readall()
        except ResourceNotFoundError:
            raise NoExportManifest(
                "the export has no manifest.json (not completed, or erased)"
            ) from None
        document = json.loads(content)
        if not isinstance(document, dict) or not isinstance(document.get("blobs"), list):
            raise NoExportManifest("the export's manifest.json cannot be read")
        return document, hashlib.sha256(content).hexdigest()

    @staticmethod
    def _check_unchanged(export: ContainerClient, manifest: Mapping[str, Any]) -> list[_ExportBlob]:
        expected = {entry["name"]: entry for entry in manifest["blobs"] if isinstance(entry, dict)}
        listed: list[_ExportBlob] = []
        added = altered = 0
        for blob in export.list_blobs():
            if blob.name in (MANIFEST_BLOB, LEGACY_AUDIT_BLOB):
                continue
            md5 = blob.content_settings.content_md5 if blob.content_settings else None
            item = _ExportBlob(
                blob.name,
                int(blob.size or 0),
                blob.etag,
                _b64(md5) if md5 else None,
                blob.last_modified.isoformat() if blob.last_modified else None,
            )
            entry = expected.pop(blob.name, None)
            if entry is None:
                added += 1
            elif (
                entry.get("size") != item.size
                or entry.get("md5") != item.md5
                or (entry.get("lastModified") not in (None, item.last_modified))
            ):
                altered += 1
            listed.append(item)
        if added or altered or expected:
            raise ExportChanged(added, len(expected), altered)
        return sorted(listed, key=lambda item: item.name)

    def _fresh_delivery(self, request_id: str) -> ContainerClient:
        """The delivery container, emptied of what an unfinished build left."""
        delivery = self._service.get_container_client(delivery_container(request_id))
        with contextlib.suppress(ResourceExistsError):
            delivery.create_container(metadata={"purpose": "dsr-package"})
        for blob in delivery.list_blobs():
            if blob.name in KEPT_BLOBS:
                continue  # the review decided on: the rebuild that follows it needs it
            with contextlib.suppress(ResourceNotFoundError):
                delivery.delete_blob(blob.name)
        return delivery

    # -- streaming the data --------------------------------------------------------------------
    def _write_data(
        self,
        export: ContainerClient,
        listed: list[_ExportBlob],
        parts: _Parts,
        renderer: Renderer,
        language: str,
    ) -> tuple[list[PackageFile], dict[str, ProductEntry]]:
        """Every blob into its data member, and its page after it, in two threads: the zip
        thread writes the members in order (it deflates, checksums and hashes, all of which
        release the GIL) while this one renders the page of the blob before (Python, holding
        it). The zip thread's queue holds at most one blob and one page ahead: the memory is
        bounded as in one thread, the order of the members the same every run (data 0, data
        1, page 0, data 2, page 1, ...)."""
        files: list[PackageFile] = []
        products: dict[str, ProductEntry] = {}
        pages: list[tuple[Future[PackageFile], str]] = []
        with ReadAhead(export, listed) as reader, _ZipThread() as zipper:
            previous: tuple[_ExportBlob, Future[tuple[str, bytes | None]]] | None = None
            for item in listed:
                mtype = media_type(item.name)
                chunks = reader.chunks(item)
                member = data_member(item.name)
                copied = zipper.submit(self._copy, chunks, item, parts, member, mtype)
                if previous is not None:
                    pages.append(self._page_of(export, *previous, parts, renderer, zipper))
                    self._note(previous[0], previous[1], language, files, products)
                previous = (item, copied)
            if previous is not None:
                pages.append(self._page_of(export, *previous, parts, renderer, zipper))
                self._note(previous[0], previous[1], language, files, products)
            files += [_page(page.result(), product) for page, product in pages]
        return files, products

    def _page_of(
        self,
        export: ContainerClient,
        item: _ExportBlob,
        copied: Future[tuple[str, bytes | None]],
        parts: _Parts,
        renderer: Renderer,
        zipper: _ZipThread,
    ) -> tuple[Future[PackageFile], str]:
        """Render the page of ``item`` (once its member is written) and queue it for the zip;
        its product."""
        digest, kept = copied.result()
        mtype = media_type(item.name)
        product = product_of(item.name)
        entry = FileEntry(item.name, data_member(item.name), item.size, digest, mtype, product)
        entry.page = file_page(item.name)
        view = self._view(export.get_blob_client(item.name), item, mtype, kept)
        page = renderer.file_page(entry, view)
        return zipper.submit(parts.add, entry.page, page, "text/html"), product

    @staticmethod
    def _note(
        item: _ExportBlob,
        copied: Future[tuple[str, bytes | None]],
        language: str,
        files: list[PackageFile],
        products: dict[str, ProductEntry],
    ) -> None:
        """``item`` in the manifest's files and its product's list."""
        digest, _ = copied.result()
        mtype, product = media_type(item.name), product_of(item.name)
        member = data_member(item.name)
        section = products.setdefault(product, product_entry(product, language))
        entry = FileEntry(item.name, member, item.size, digest, mtype, product)
        entry.page = file_page(item.name)
        section.files.append(entry)
        files.append(PackageFile(member, item.size, digest, mtype, product, "data"))

    def _copy(
        self, chunks: Iterator[bytes], item: _ExportBlob, parts: _Parts, member: str, mtype: str
    ) -> tuple[str, bytes | None]:
        """Stream one blob into its member; its SHA-256, and its bytes when small enough to
        show (else None)."""
        digest = hashlib.sha256()
        keep = item.size <= self._options.render_max_bytes and mtype != "application/zip"
        kept: list[bytes] | None = [] if keep else None
        written = 0
        with parts.open(member, item.size, mtype) as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                if kept is not None:
                    kept.append(chunk)
        if written != item.size:
            raise ExportChanged(0, 0, 1)
        return digest.hexdigest(), b"".join(kept) if kept is not None else None

    def _view(
        self, blob: BlobClient, item: _ExportBlob, mtype: str, kept: bytes | None
    ) -> FileView:
        if mtype == "application/zip":
            try:
                reader = cast(IO[bytes], RangeReader(blob, item.size, item.etag))
                listing = archive.inspect_zip(reader, self._options.limits)
            except ResourceModifiedError:
                raise ExportChanged(0, 0, 1) from None
            return FileView("zip", listing=listing)
        return view_of(mtype, kept)


class _ZipThread:
    """One thread that runs what it is given in order (the zip's writes); an error is raised
    where its result is taken. Leaving the ``with`` cancels what has not started and waits for
    what has (before the reader it takes blobs from is stopped)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zip")

    def __enter__(self) -> _ZipThread:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Run ``call`` after everything submitted before it."""
        return self._pool.submit(call, *args, **kwargs)


class ReadAhead:
    """Reads the export's blobs, in order, in ranges of :data:`READ_BYTES`, on
    :data:`READERS` threads at once, at most :data:`READ_AHEAD` ranges (and
    :data:`READ_AHEAD_BYTES`) ahead of the builder:
    the next ranges (of this blob or the next ones) are on their way while this one is
    compressed, hashed and uploaded, and one slow round trip does not stall the others (most
    blobs of an export are small: a request each). Ranges are handed over in the export's
    order whatever order they arrive in. An error of a read (the export changed, storage
    failed) is raised where the builder takes that range, and every later call raises too;
    leaving the ``with`` cancels what has not started and waits for what has."""

    def __init__(self, export: ContainerClient, listed: Sequence[_ExportBlob]) -> None:
        self._export = export
        self._plan = _ranges(listed)
        self._ahead: deque[tuple[str, int, Future[bytes | None]]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="read-ahead")
        self._failed: BaseException | None = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._ahead.clear()

    def _fill(self) -> None:
        while len(self._ahead) < READ_AHEAD and (
            not self._ahead or sum(size for _, size, _ in self._ahead) < READ_AHEAD_BYTES
        ):
            step = next(self._plan, None)
            if step is None:
                return
            item, offset, length = step
            if length < 0:  # the end of a blob: nothing to read
                done: Future[bytes | None] = Future()
                done.set_result(None)
                self._ahead.append((item.name, 0, done))
                continue
            blob = self._export.get_blob_client(item.name)
            read = self._pool.submit(_read_range, blob, offset, length, item.etag)
            self._ahead.append((item.name, length, read))

    def chunks(self, item: _ExportBlob) -> Iterator[bytes]:
        """The ranges of ``item`` (the next blob in order)."""
        while True:
            if self._failed is not None:
                raise RuntimeError("the read-ahead has failed") from self._failed
            self._fill()
            if not self._ahead:
                raise RuntimeError(f"read-ahead: nothing more to read, not {item.name!r}")
            name, _, read = self._ahead.popleft()
            if name != item.name:
                raise RuntimeError(f"read-ahead out of order: {name!r}, not {item.name!r}")
            try:
                chunk = read.result()
            except BaseException as error:
                self._failed = error
                raise
            if chunk is None:
                return
            yield chunk


def _ranges(listed: Sequence[_ExportBlob]) -> Iterator[tuple[_ExportBlob, int, int]]:
    """Every range of every blob in order, each blob closed by a length of -1."""
    for item in listed:
        for offset in range(0, item.size, READ_BYTES):
            yield item, offset, min(READ_BYTES, item.size - offset)
        yield item, item.size, -1


def _read_range(blob: BlobClient, offset: int, length: int, etag: str | None) -> bytes | None:
    """One range of a blob, pinned to the listed ETag.

    Ranged, not ``download_blob().chunks()``: the SDK's downloader fetches its first 32 MiB in
    one piece (``max_single_get_size``), which is what this must never hold.
    """
    kwargs: dict[str, Any] = {}
    if etag:
        kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
    try:
        return bytes(blob.download_blob(offset=offset, length=length, **kwargs).readall())
    except ResourceModifiedError:
        raise ExportChanged(0, 0, 1) from None


def _b64(md5: bytes | bytearray) -> str:
    import base64

    return base64.b64encode(bytes(md5)).decode()


def _page(item: PackageFile, product: str | None) -> PackageFile:
    return PackageFile(item.path, item.size, item.sha256, item.media_type, product, "page")


def _role(item: PackageFile, role: str) -> PackageFile:
    assert role in ("index", "readme")
    return PackageFile(item.path, item.size, item.sha256, item.media_type, None, role)  # type: ignore[arg-type]
