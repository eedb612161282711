"""How the builder moves bytes (counts and order, never time): each blob read in ranges of
READ_BYTES by READERS threads at most READ_AHEAD ranges ahead, handed over in the export's
order; a reader's error raised where the builder takes that range (and on every later take,
never a wait); blocks uploaded behind the writer
with an upload's error surfacing before any commit; members deflated at level 1; a JSON table's
scalar cells rendered as the tree renders scalars."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceModifiedError
from isal import isal_zlib

from dsr_export.adapters import package_builder
from dsr_export.adapters.package_builder import (
    READ_AHEAD,
    READ_BYTES,
    BlockBlobWriter,
    ExportChanged,
    ReadAhead,
    _ExportBlob,
    _Parts,
)
from dsr_export.domain.organisation import OrganisationProfile
from dsr_export.rendering.render import Facts, FileEntry, Renderer
from dsr_export.rendering.views import view_of
from tests.package_fixtures import PROFILE
from tests.unit.test_package_zip_writer import MemoryBlob, MemoryContainer


class _Download:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def readall(self) -> bytes:
        return self._data


class RangedBlob:
    """A blob answering ranged reads; counts them, and how far the reader ran ahead."""

    def __init__(self, data: bytes, export: FakeExport, *, modified: bool = False) -> None:
        self.data, self.export, self.modified = data, export, modified
        self.ranges: list[tuple[int, int]] = []

    def download_blob(self, *, offset: int, length: int, **_: Any) -> _Download:
        if self.modified:
            raise ResourceModifiedError(
                "the condition specified using HTTP conditional header(s) is not met"
            )
        self.ranges.append((offset, length))
        self.export.fetched += 1
        self.export.ahead = max(self.export.ahead, self.export.fetched - self.export.taken)
        return _Download(self.data[offset : offset + length])


class FakeExport:
    def __init__(self) -> None:
        self.blobs: dict[str, RangedBlob] = {}
        self.fetched = self.taken = self.ahead = 0

    def add(self, name: str, data: bytes, **kwargs: Any) -> _ExportBlob:
        self.blobs[name] = RangedBlob(data, self, **kwargs)
        return _ExportBlob(name, len(data), '"etag"', None, None)

    def get_blob_client(self, name: str) -> RangedBlob:
        return self.blobs[name]


def _read_all(export: FakeExport, listed: list[_ExportBlob]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with ReadAhead(export, listed) as reader:  # type: ignore[arg-type]
        for item in listed:
            chunks = []
            for chunk in reader.chunks(item):
                export.taken += 1
                chunks.append(chunk)
            out[item.name] = b"".join(chunks)
    return out


def test_blobs_are_read_in_ranges_in_order_and_never_more_than_read_ahead():
    export = FakeExport()
    big = bytes(range(256)) * (READ_BYTES * 5 // 256 + 3)  # five ranges and a bit
    listed = [
        export.add("A/small.json", b"{}"),
        export.add("B/big.bin", big),
        export.add("C/empty.json", b""),
        export.add("D/last.json", b"[1]"),
    ]
    assert _read_all(export, listed) == {
        "A/small.json": b"{}",
        "B/big.bin": big,
        "C/empty.json": b"",
        "D/last.json": b"[1]",
    }
    assert [length for _, length in sorted(export.blobs["B/big.bin"].ranges)] == [
        READ_BYTES
    ] * 5 + [768]
    assert export.blobs["C/empty.json"].ranges == []
    # Taken, in the queue, and the one the reader holds while waiting for room.
    assert export.ahead <= READ_AHEAD + 2


def test_an_export_changed_while_read_ahead_is_raised_where_the_builder_takes_it():
    export = FakeExport()
    listed = [export.add("A/first.json", b"{}"), export.add("B/changed.json", b"{}", modified=True)]
    with ReadAhead(export, listed) as reader:  # type: ignore[arg-type]
        assert b"".join(reader.chunks(listed[0])) == b"{}"
        with pytest.raises(ExportChanged):
            list(reader.chunks(listed[1]))
        with pytest.raises(RuntimeError, match="failed"):
            list(reader.chunks(listed[1]))


def test_leaving_early_stops_the_reader():
    export = FakeExport()
    listed = [export.add(f"F/{n}.bin", b"x" * (READ_BYTES * 3)) for n in range(20)]
    before = threading.active_count()
    with ReadAhead(export, listed) as reader:  # type: ignore[arg-type]
        next(reader.chunks(listed[0]))
    assert threading.active_count() == before
    assert export.fetched < 60, "the reader stopped, it did not read the whole export"


class FailingBlob(MemoryBlob):
    def stage_block(self, block_id: str, data: bytes) -> None:
        if len(self.block_sizes) == 1:
            raise OSError("connection reset")
        super().stage_block(block_id, data)


def test_an_upload_error_surfaces_before_anything_is_committed():
    blob = FailingBlob()
    writer = BlockBlobWriter(blob, hashlib.sha256(), block_bytes=1000)  # type: ignore[arg-type]

    def write_and_commit() -> None:
        for _ in range(10):
            writer.write(b"y" * 500)
        writer.commit()

    with pytest.raises(OSError, match="connection reset"):
        write_and_commit()
    assert blob.committed is None


def test_blocks_staged_behind_the_writer_commit_in_order():
    blob = MemoryBlob()
    writer = BlockBlobWriter(blob, hashlib.sha256(), block_bytes=1000)  # type: ignore[arg-type]
    content = bytes(range(256)) * 40
    for start in range(0, len(content), 700):
        writer.write(content[start : start + 700])
    assert writer.commit() == len(content)
    assert blob.committed == content


def test_members_are_deflated_by_isa_l_at_level_one_and_read_back_by_zipfile():
    text = json.dumps(
        [{"at": f"2026-01-{d % 28 + 1:02d}", "n": d * 7919 % 1000} for d in range(4000)]
    )
    data = text.encode()
    container = MemoryContainer()
    parts = _Parts(container, ["package.zip"], part_bytes=10**12)  # type: ignore[arg-type]
    parts.add("data/x.json", data, "application/json")
    parts.close()
    committed = container.blobs["package.zip"].committed
    assert committed is not None
    raw = isal_zlib.compressobj(package_builder.DEFLATE_LEVEL, isal_zlib.DEFLATED, -15)
    level_one = raw.compress(data) + raw.flush()
    zlib_one = zlib.compressobj(1, zlib.DEFLATED, -15)
    assert level_one != zlib_one.compress(data) + zlib_one.flush()
    assert level_one in committed
    with zipfile.ZipFile(io.BytesIO(committed)) as archive:
        assert archive.read("data/x.json") == data  # the CRC checked on the way
        assert archive.getinfo("data/x.json").compress_size == len(level_one) < len(data) // 4


def test_a_json_tables_scalar_cells_render_as_the_tree_renders_scalars():
    now = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    facts = Facts(
        "R-1", packaged_at=now, received_at=now, deadline=now, completed_at=now, regulation="GDPR"
    )
    renderer = Renderer("en", OrganisationProfile.parse(PROFILE), facts)
    rows = [{"a": None, "b": "<x>", "c": 3, "d": {"e": True}}]
    entry = FileEntry("P/t.json", "data/P/t.json", 10, "0" * 64, "application/json", "P")
    entry.page = "pages/P/t.json.html"
    page = renderer.file_page(
        entry, view_of("application/json", json.dumps(rows).encode())
    ).decode()
    assert '<td><span class="kind-null null">null</span></td>' in page
    assert '<td><span class="kind-string">&lt;x&gt;</span></td>' in page
    assert '<td><span class="kind-number">3</span></td>' in page
    assert re.search(r'<td><table class="json-object">.*?<span class="kind-bool">true</span>', page)
