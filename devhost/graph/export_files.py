"""What an export leaves in the container: one blob per product file, the same every run.

The service writes a folder per product (and one file per Teams chat) over the export's days;
the app only counts and forwards them. Names, sizes and content follow from the seed and the
user, so a test can ask beforehand which files must arrive and how large each one is.
"""

from __future__ import annotations

import functools
import io
import json
import random
import uuid
import zipfile
import zlib
from dataclasses import dataclass

_PRODUCTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AzureAD", ("Profile.json", "SignInActivity.json", "Devices.json", "Groups.json")),
    ("Exchange", ("Mailbox.json", "Contacts.json", "Calendar.json", "Tasks.json")),
    ("OneDrive", ("Files.json", "Sharing.json", "Versions.json")),
    ("SharePoint", ("Sites.json", "Lists.json")),
    ("Teams", ("Profile.json", "Meetings.json")),
    ("Dynamics365", ("Interactions.json",)),
)


@dataclass(frozen=True)
class ExportFile:
    path: str
    size: int


def manifest(seed: int, user_id: str) -> tuple[ExportFile, ...]:
    """The product files of one user's export: same seed and user, same names and sizes."""
    rng = random.Random(f"{seed}:{user_id}")  # noqa: S311 - reproducibility, not secrecy
    files: list[ExportFile] = []
    for product, names in _PRODUCTS:
        chosen = [n for n in names if rng.random() < 0.7] or [names[0]]
        files += [ExportFile(f"{product}/{n}", rng.randint(512, 16_384)) for n in chosen]
    for chat in range(rng.randint(1, 4)):
        files.append(ExportFile(f"Teams/Chats/Chat-{chat + 1:03d}.json", rng.randint(512, 16_384)))
    return tuple(files)


def render(seed: int, user_id: str, item: ExportFile) -> bytes:
    """Deterministic JSON content of exactly ``item.size`` bytes."""
    rng = random.Random(f"{seed}:{user_id}:{item.path}")  # noqa: S311
    head = {"product": item.path.split("/")[0], "file": item.path, "userId": user_id}
    skeleton = json.dumps({**head, "padding": ""}).encode()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    padding = "".join(rng.choice(alphabet) for _ in range(item.size - len(skeleton)))
    data = json.dumps({**head, "padding": padding}).encode()
    assert len(data) == item.size
    return data


@dataclass(frozen=True)
class ExportLayout:
    """Which layout an export is written in, and how large it is.

    ``products`` (the default) is Microsoft Learn's description: a folder per product, small
    JSON files. ``service`` is what the service's public source writes: each agent's data under
    ``{assetGroupId}/{agentId}/...``, some of it zipped (with zips inside zips), and, for
    exports of ``total_bytes``, a file of ``large_bytes`` every so often: the shapes a package
    must stream (``make bench`` packages one of 5 GB).
    """

    kind: str = "products"  # "products" or "service"
    total_bytes: int = 0  # service layout: about this many bytes in all
    large_bytes: int = 24 * 1024 * 1024  # service layout: the size of the large files
    large_every: int = 40  # service layout: one large file after this many small ones

    def __post_init__(self) -> None:
        if self.kind not in ("products", "service"):
            raise ValueError(f"layout: {self.kind!r} is neither 'products' nor 'service'")
        if self.kind == "service" and self.total_bytes <= 0:
            raise ValueError("layout: the service layout needs total_bytes > 0")


PRODUCTS_LAYOUT = ExportLayout()
#: A zip of the service layout: its members' uncompressed size (a nested zip inside).
_ZIP_MEMBERS = 6


def files_of(
    seed: int, user_id: str, layout: ExportLayout = PRODUCTS_LAYOUT
) -> tuple[ExportFile, ...]:
    """The files of one user's export in ``layout`` (Graph's ``RequestInfo.json`` apart); the
    same arguments give the same names and sizes."""
    if layout.kind == "products":
        return manifest(seed, user_id)
    rng = random.Random(f"{seed}:{user_id}:service")  # noqa: S311
    groups = [_uuid(rng) for _ in range(3)]
    agents = {group: [_uuid(rng) for _ in range(4)] for group in groups}
    # RequestInfo.json is not among them: the simulator writes it when the export is accepted.
    files: list[ExportFile] = []
    total = 0
    index = 0
    while total < layout.total_bytes:
        group = groups[index % len(groups)]
        agent = agents[group][(index // len(groups)) % 4]
        index += 1
        if index % layout.large_every == 0:
            item = ExportFile(f"{group}/{agent}/Large/{index:06d}.json", layout.large_bytes)
        elif index % 7 == 0:
            # A zip's size is known only once made; the one listed is the uncompressed content.
            item = ExportFile(
                f"{group}/{agent}/Archive/{index:06d}.zip", rng.randint(64, 512) << 10
            )
        else:
            item = ExportFile(f"{group}/{agent}/Data/{index:06d}.json", rng.randint(2, 96) << 10)
        size = min(item.size, max(512, layout.total_bytes - total))
        files.append(ExportFile(item.path, size))
        total += size
    return tuple(files)


def content_of(seed: int, user_id: str, item: ExportFile) -> bytes:
    """The bytes of ``item`` in either layout: exactly ``item.size`` bytes of JSON, or a zip
    (deflated JSON members and a nested zip) holding about that much."""
    if item.path.endswith(".zip"):
        return _zip_of(seed, user_id, item)
    if item.size <= 16_384 and "/" in item.path and item.path.split("/")[0] in _PRODUCT_NAMES:
        return render(seed, user_id, item)
    return _json_of(seed, item.path, item.size)


_PRODUCT_NAMES = frozenset(name for name, _ in _PRODUCTS)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@functools.cache
def _pool(seed: int) -> bytes:
    """1 MiB of JSON-ish records (sign-ins, messages) to cut files from: realistic to compress,
    cheap to make (``render`` draws one random character at a time, fine for kilobytes only)."""
    rng = random.Random(f"{seed}:pool")  # noqa: S311
    apps = ("Outlook", "Teams", "SharePoint", "OneDrive", "Azure Portal", "Exchange Online")
    out = bytearray()
    while len(out) < 1 << 20:
        record = {
            "id": _uuid(rng),
            "at": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
            "app": rng.choice(apps),
            "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "subject": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(40)),
            "size": rng.randint(0, 10_000_000),
        }
        out += json.dumps(record).encode() + b",\n"
    return bytes(out)


def _json_of(seed: int, path: str, size: int) -> bytes:
    """``size`` bytes of JSON: ``{"file": ..., "records": [...], "padding": "..."}``, cut from
    the pool at an offset that depends on the path."""
    pool = _pool(seed)
    head = b'{"file": ' + json.dumps(path).encode() + b', "records": ['
    tail_empty = b'], "padding": ""}'
    if len(head) + len(tail_empty) > size:
        return (b" " * size)[:size] if size < 2 else b'"' + b"x" * (size - 2) + b'"'
    body = bytearray()
    start = pool.find(b",\n", zlib.crc32(path.encode()) % len(pool)) + 2
    room = size - len(head) - len(tail_empty)
    while len(body) < room:
        piece = pool[start:] + pool[:start]
        cut = piece[: piece.rfind(b",\n", 0, max(2, room - len(body))) + 2]
        if len(cut) < 3:
            break
        body += cut
        start = pool.find(b",\n", (start + 4099) % (len(pool) - 8192)) + 2
    records = bytes(body).rstrip(b",\n")
    filler = size - len(head) - len(records) - len(tail_empty)
    if filler < 0:  # the last record did not fit: drop records until it does
        records = records[: records.rfind(b",\n", 0, room - 2) if b",\n" in records else 0]
        records = records.rstrip(b",\n")
        filler = size - len(head) - len(records) - len(tail_empty)
    data = head + records + b'], "padding": "' + b"x" * filler + b'"}'
    assert len(data) == size, (len(data), size)
    return data


def _zip_of(seed: int, user_id: str, item: ExportFile) -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_info("inner.json"), _json_of(seed, item.path + "#inner", 8192))
    outer = io.BytesIO()
    share = max(1024, item.size // _ZIP_MEMBERS)
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(_ZIP_MEMBERS - 1):
            name = f"part-{number + 1:02d}.json"
            archive.writestr(_info(name), _json_of(seed, f"{item.path}#{name}", share))
        archive.writestr(_info("nested.zip"), inner.getvalue())
    return outer.getvalue()


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
