"""The builder's zip writer on an unseekable, block-staging blob (in memory here): a valid zip
with ZIP64 records when the member count needs them, blocks staged at the block size, parts
rolled at the part size and never past the last name."""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any

from dsr_export.adapters.package_builder import BlockBlobWriter, _Parts


class MemoryBlob:
    """A block blob's staging and commit, in memory."""

    def __init__(self) -> None:
        self.staged: dict[str, bytes] = {}
        self.committed: bytes | None = None
        self.block_sizes: list[int] = []

    def stage_block(self, block_id: str, data: bytes) -> None:
        self.staged[block_id] = data
        self.block_sizes.append(len(data))

    def commit_block_list(self, blocks: list[Any], **_: Any) -> None:
        self.committed = b"".join(self.staged[block.id] for block in blocks)


class MemoryContainer:
    def __init__(self) -> None:
        self.blobs: dict[str, MemoryBlob] = {}

    def get_blob_client(self, name: str) -> MemoryBlob:
        return self.blobs.setdefault(name, MemoryBlob())


def test_the_writer_stages_full_blocks_and_hashes_what_it_wrote():
    blob, whole = MemoryBlob(), hashlib.sha256()
    writer = BlockBlobWriter(blob, whole, block_bytes=1000)  # type: ignore[arg-type]
    for _ in range(7):
        writer.write(b"x" * 333)
    assert writer.commit() == 2331
    assert blob.block_sizes == [1000, 1000, 331]
    assert blob.committed == b"x" * 2331
    assert (
        writer.sha256.hexdigest() == whole.hexdigest() == hashlib.sha256(blob.committed).hexdigest()
    )


def test_more_members_than_zip_allows_get_zip64_records():
    container = MemoryContainer()
    parts = _Parts(container, ["package.zip"], part_bytes=10**12)  # type: ignore[arg-type]
    count = 65_600
    for number in range(count):
        parts.add(f"pages/{number}.txt", b"", "text/plain")
    parts.close()
    content = container.blobs["package.zip"].committed
    assert content is not None
    assert b"PK\x06\x06" in content[-200:], "the ZIP64 end of central directory record"
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert len(archive.infolist()) == count
        assert archive.testzip() is None


def test_parts_roll_at_the_size_and_never_past_the_last_name():
    container = MemoryContainer()
    names = ["package.part-001.zip", "package.part-002.zip"]
    parts = _Parts(container, names, part_bytes=1000)  # type: ignore[arg-type]
    for number in range(6):
        parts.add(f"data/{number}.bin", bytes(range(256)) * 2, "application/zip")
    parts.close()
    assert [part["name"] for part in parts.done] == names
    for name in names:
        content = container.blobs[name].committed
        assert content is not None
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            assert archive.namelist()


def test_a_buffer_the_caller_reuses_after_writing_is_staged_as_it_was_written():
    blob = MemoryBlob()
    writer = BlockBlobWriter(blob, None, block_bytes=1000)  # type: ignore[arg-type]
    buffer = bytearray(b"a" * 600)
    writer.write(buffer)
    buffer[:] = b"b" * 600  # zipfile's callers may hand in a buffer and refill it
    writer.write(buffer)
    writer.write(memoryview(b"c" * 2500))
    assert writer.commit() == 3700
    assert blob.block_sizes == [1000, 1000, 1000, 700]
    assert blob.committed == b"a" * 600 + b"b" * 600 + b"c" * 2500
    assert writer.sha256.hexdigest() == hashlib.sha256(blob.committed).hexdigest()
