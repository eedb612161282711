"""What is inside a zip file of the export, listed without extracting anything.

Some export agents write ``.zip`` files. The person should see what they hold, but a zip is
input from outside: it may be a bomb (a tiny file that inflates to terabytes), hold a member
named ``../../etc/passwd`` or ``C:\\x``, be encrypted, nest zips in zips, or not be a zip at
all. So this only *reads the directory* (and, for a nested zip, at most
:attr:`ArchiveLimits.nested_max_bytes` of it): nothing is ever written, every limit is counted
before anything is opened, and each member that is not opened says why. A broken archive is a
listing with a reason, never an exception.

Pure: the caller hands a seekable binary file (for a blob, a ranged reader).
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import IO, Final

#: Why a member or an archive was not opened (stable codes; the pages translate them).
ENCRYPTED: Final = "encrypted"
UNSAFE_NAME: Final = "unsafe-name"
RATIO: Final = "ratio"
TOO_LARGE: Final = "too-large"
TOO_DEEP: Final = "too-deep"
TOO_MANY: Final = "too-many"
NOT_A_ZIP: Final = "not-a-zip"


@dataclass(frozen=True)
class ArchiveLimits:
    """How far a listing goes: members per archive, declared uncompressed bytes per archive,
    the compression ratio of one member, how deep nested zips are followed and how large a
    nested zip may be to be read at all."""

    max_members: int = 10_000
    max_total_bytes: int = 8 * 1024**3
    max_ratio: int = 200
    max_depth: int = 2
    nested_max_bytes: int = 16 * 1024**2


@dataclass(frozen=True)
class Member:
    """One member of an archive: its name as stored, sizes, and whether it was looked into."""

    name: str
    size: int
    compressed: int
    is_dir: bool = False
    #: Why it was not opened or is flagged (None: an ordinary member).
    flag: str | None = None
    #: A nested zip's own listing, when it was read.
    nested: Listing | None = None


@dataclass(frozen=True)
class Listing:
    """An archive's members, or the reason it could not be read (``problem``)."""

    members: tuple[Member, ...] = ()
    problem: str | None = None
    truncated: bool = False
    total_bytes: int = 0
    members_seen: int = field(default=0)


def unsafe_name(name: str) -> bool:
    """True for a member name that would land outside a folder it is extracted to (absolute,
    a drive, ``..``, a backslash path) or hides what it is (control or bidi characters)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name:
        return True
    if len(name) > 1 and name[1] == ":":
        return True
    if any(
        ord(char) < 0x20 or 0x202A <= ord(char) <= 0x202E or 0x2066 <= ord(char) <= 0x2069
        for char in name
    ):
        return True
    return ".." in posixpath.normpath(name).split("/") or ".." in name.split("/")


def inspect_zip(
    source: IO[bytes], limits: ArchiveLimits = ArchiveLimits(), depth: int = 1
) -> Listing:
    """List a zip's members within ``limits``; never raises for what the archive holds."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return Listing(problem=NOT_A_ZIP)
    with archive:
        try:
            infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError):  # pragma: no cover - defensive
            return Listing(problem=NOT_A_ZIP)
        members: list[Member] = []
        total = 0
        for info in infos[: limits.max_members]:
            total += info.file_size
            members.append(_member(archive, info, limits, depth, total))
        return Listing(
            members=tuple(members),
            truncated=len(infos) > limits.max_members,
            total_bytes=sum(info.file_size for info in infos),
            members_seen=len(infos),
            problem=TOO_MANY if len(infos) > limits.max_members else None,
        )


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, depth: int, total: int
) -> Member:
    base = Member(info.filename, info.file_size, info.compress_size, is_dir=info.is_dir())
    flag: str | None = None
    if unsafe_name(info.filename):
        flag = UNSAFE_NAME
    elif info.flag_bits & 0x1:
        flag = ENCRYPTED
    elif info.compress_size and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
        flag = RATIO
    elif total > limits.max_total_bytes:
        flag = TOO_LARGE
    if flag is not None or info.is_dir() or not info.filename.lower().endswith(".zip"):
        return Member(base.name, base.size, base.compressed, base.is_dir, flag)
    if depth >= limits.max_depth:
        return Member(base.name, base.size, base.compressed, flag=TOO_DEEP)
    if info.file_size > limits.nested_max_bytes:
        return Member(base.name, base.size, base.compressed, flag=TOO_LARGE)
    try:
        with archive.open(info) as handle:
            content = handle.read(limits.nested_max_bytes + 1)
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError, NotImplementedError):
        return Member(base.name, base.size, base.compressed, flag=NOT_A_ZIP)
    if len(content) > limits.nested_max_bytes:
        return Member(base.name, base.size, base.compressed, flag=TOO_LARGE)
    nested = inspect_zip(io.BytesIO(content), limits, depth + 1)
    return Member(base.name, base.size, base.compressed, nested=nested)
