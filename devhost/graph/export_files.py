"""What an export leaves in the container: one blob per product file, the same every run.

The service writes a folder per product (and one file per Teams chat) over the export's days;
the app only counts and forwards them. Names, sizes and content follow from the seed and the
user, so a test can ask beforehand which files must arrive and how large each one is.
"""

from __future__ import annotations

import json
import random
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
