"""One member larger than 4 GiB through the builder's real zip writer (``_Parts`` over
``zipfile`` over ``BlockBlobWriter``), read back with Python's ``zipfile``: the member's sizes
and the next member's offset past 4 GiB (ZIP64 extra fields in the local header and the
central directory), its ZIP64 data descriptor, and its CRC checked by reading it whole.

Cheap enough for pytest (about 10 s here): the member is zeros apart from a marked head and
tail, the staged blocks that are all zeros are kept as holes (a sparse blob in memory), and
the package is one part, so its bytes are hashed once.
"""

from __future__ import annotations

import bisect
import io
import struct
import zipfile
from typing import Any

from dsr_export.adapters.package_builder import _Parts

GIB = 1024**3
CHUNK = 8 * 1024 * 1024
SIZE = 4 * GIB + CHUNK + 12_345  # not a multiple of any block size
HEAD, TAIL = b"HEAD-OF-THE-MEMBER", b"TAIL-OF-THE-MEMBER"


class SparseBlob:
    """A block blob in memory that keeps a block of zeros as its length only."""

    def __init__(self) -> None:
        self.staged: dict[str, bytes | int] = {}
        self.blocks: list[bytes | int] = []

    def stage_block(self, block_id: str, data: bytes) -> None:
        self.staged[block_id] = len(data) if data == bytes(len(data)) else data

    def commit_block_list(self, blocks: list[Any], **_: Any) -> None:
        self.blocks = [self.staged[block.id] for block in blocks]


class SparseContainer:
    def __init__(self) -> None:
        self.blobs: dict[str, SparseBlob] = {}

    def get_blob_client(self, name: str) -> SparseBlob:
        return self.blobs.setdefault(name, SparseBlob())


class SparseReader(io.RawIOBase):
    """The committed blob, seekable, as ``zipfile`` reads it."""

    def __init__(self, blocks: list[bytes | int]) -> None:
        self._blocks = blocks
        self._starts: list[int] = []
        position = 0
        for block in blocks:
            self._starts.append(position)
            position += block if isinstance(block, int) else len(block)
        self.size, self._position = position, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = {0: 0, 1: self._position, 2: self.size}[whence] + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        out: list[bytes] = []
        while self._position < end:
            index = bisect.bisect_right(self._starts, self._position) - 1
            block, offset = self._blocks[index], self._position - self._starts[index]
            length = block if isinstance(block, int) else len(block)
            take = min(length - offset, end - self._position)
            out.append(bytes(take) if isinstance(block, int) else block[offset : offset + take])
            self._position += take
        return out[0] if len(out) == 1 else b"".join(out)


def _write_member(parts: _Parts) -> None:
    """The large member, streamed in chunks."""
    zeros = bytes(CHUNK)
    with parts.open("data/large.bin", SIZE, "application/zip") as handle:  # stored, as a zip is
        handle.write(HEAD)
        left = SIZE - len(HEAD) - len(TAIL)
        while left:
            handle.write(zeros if left >= CHUNK else zeros[:left])
            left -= min(CHUNK, left)
        handle.write(TAIL)


def test_a_member_over_4_gib_and_offsets_past_it_read_back_with_zipfile():
    container = SparseContainer()
    parts = _Parts(container, ["package.zip"], part_bytes=8 * GIB)  # type: ignore[arg-type]
    parts.add("index.html", b"<!doctype html><title>x</title>", "text/html")
    _write_member(parts)
    after = parts.add("pages/after.html", b"<p>after the large member</p>" * 50, "text/html")
    parts.close()
    blocks = container.blobs["package.zip"].blocks
    reader = SparseReader(blocks)
    assert parts.done[0]["size"] == reader.size > SIZE
    assert parts.package_sha256() == parts.done[0]["sha256"]

    with zipfile.ZipFile(reader) as archive:
        assert archive.namelist() == ["index.html", "data/large.bin", "pages/after.html"]
        large, last = archive.getinfo("data/large.bin"), archive.getinfo("pages/after.html")
        assert large.file_size == large.compress_size == SIZE
        assert large.compress_type == zipfile.ZIP_STORED
        assert large.flag_bits & 0x08, "sizes follow in a data descriptor (unseekable writer)"
        assert last.header_offset > 4 * GIB, "an offset that needs the ZIP64 extra field"
        assert archive.read("pages/after.html") == b"<p>after the large member</p>" * 50
        assert after.size == last.file_size

        # The local header carries a ZIP64 extra field; the data descriptor 8-byte sizes.
        reader.seek(large.header_offset)
        header = reader.read(30)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        extra = reader.read(name_length + extra_length)[name_length:]
        assert struct.unpack("<H", extra[:2])[0] == 0x0001, "ZIP64 extended information"
        reader.seek(large.header_offset + 30 + name_length + extra_length + SIZE)
        signature, descriptor_crc, compressed, size = struct.unpack("<IIQQ", reader.read(24))
        assert (signature, descriptor_crc, compressed, size) == (0x08074B50, large.CRC, SIZE, SIZE)

        # Read whole, streaming: zipfile checks the CRC the central directory holds at the end
        # (BadZipFile if it differs), so it is the CRC of what was written.
        seen, first, tail = 0, b"", b""
        with archive.open(large) as member:
            while chunk := member.read(CHUNK):
                first = first or chunk[: len(HEAD)]
                tail = (tail + chunk)[-len(TAIL) :]
                seen += len(chunk)
        assert (seen, first, tail) == (SIZE, HEAD, TAIL)
