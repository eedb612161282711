"""What Microsoft's folders mean, in plain language: the catalog behind the package's pages.

Microsoft does not publish the folder names or file schemas of each product; the catalog
(``data/export_catalog.json``, shipped with the code, each entry with its source) names the
products a folder is labelled with and the fields of ``RequestInfo.json``. A folder it does not
know (in the service's own layout, an asset group id) gets the generic explanation, and every
page points at Microsoft's Learn page on system-generated logs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

DEFAULT_LANGUAGE: Final = "en"


@dataclass(frozen=True)
class Explanation:
    """One entry in the reader's language, with its source, and whether it was known."""

    text: str
    source: str
    known: bool


@functools.cache
def catalog() -> dict[str, Any]:
    """The catalog document (read once from the package's data)."""
    text = (
        resources.files("dsr_export.domain")
        .joinpath("data/export_catalog.json")
        .read_text(encoding="utf-8")
    )
    document: dict[str, Any] = json.loads(text)
    return document


def _pick(entry: dict[str, Any], language: str) -> str:
    summary = entry["summary"]
    return str(summary.get(language) or summary[DEFAULT_LANGUAGE])


def explain_product(product: str, language: str) -> Explanation:
    """What a top folder holds; the generic explanation for one the catalog does not know."""
    entry = catalog()["products"].get(product)
    if entry is None:
        unknown = catalog()["unknown"]
        return Explanation(_pick(unknown, language), unknown["source"], known=False)
    return Explanation(_pick(entry, language), entry["source"], known=True)


def explain_request_info_field(name: str, language: str) -> Explanation | None:
    """What one field of ``RequestInfo.json`` means, or None for a field not in the catalog."""
    entry = catalog()["requestInfoFields"].get(name)
    if entry is None:
        return None
    return Explanation(_pick(entry, language), entry["source"], known=True)


def reference(language: str) -> tuple[str, str]:
    """The Learn page on system-generated logs: its URL and title in the reader's language."""
    ref = catalog()["reference"]
    title = ref["title"]
    return str(ref["url"]), str(title.get(language) or title[DEFAULT_LANGUAGE])
