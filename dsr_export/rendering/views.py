"""A file of the export as a page shows it: JSON as tables and trees, CSV as a table, text as
text, a zip as its listing; anything else (or anything that cannot be read) as a note.

Every view is bounded (rows, columns, depth, characters), so one huge or hostile file cannot
make a page too large to open; what is cut is counted and said. Nothing here produces markup:
the templates render these values, escaped (a JSON value through
:mod:`dsr_export.rendering.json_html`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from dsr_export.domain.archive import Listing
from dsr_export.rendering.json_html import MAX_COLUMNS, MAX_ROWS

MAX_TEXT: Final = 200_000


@dataclass
class FileView:
    """What a file page shows of one file (``mode`` picks the template's branch)."""

    mode: Literal["json", "csv", "text", "zip", "none"]
    problem: str | None = None
    #: The parsed JSON (``json``): written to HTML, bounded, when the page is rendered.
    data: Any = None
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    more_rows: int = 0
    text: str = ""
    truncated: bool = False
    listing: Listing | None = None


def _decode(content: bytes) -> str | None:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def view_of(media_type: str, content: bytes | None) -> FileView:
    """The view of one file; ``content`` None means too large to render (listed only).

    A file that does not parse as its type says so (``problem``) and shows as text where it
    is text; it is never an error of the package.
    """
    if content is None:
        return FileView("none", problem="too-large")
    text = _decode(content)
    if text is None:
        return FileView(
            "none",
            problem="unreadable"
            if media_type.startswith(("text/", "application/json"))
            else "binary",
        )
    if media_type == "application/json":
        try:
            return FileView("json", data=json.loads(text))
        except (ValueError, RecursionError):
            return _text_view(text, problem="invalid-json")
    if media_type in {"text/csv", "text/tab-separated-values"}:
        return _csv_view(text, "\t" if media_type.endswith("values") else ",")
    if media_type.startswith("text/") or media_type == "application/xml":
        return _text_view(text)
    return FileView("none", problem="binary")


def _text_view(text: str, problem: str | None = None) -> FileView:
    return FileView("text", problem=problem, text=text[:MAX_TEXT], truncated=len(text) > MAX_TEXT)


def _csv_view(text: str, delimiter: str) -> FileView:
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        rows: list[list[str]] = []
        more = 0
        for row in reader:
            if len(rows) <= MAX_ROWS:
                rows.append([cell[:2000] for cell in row[:MAX_COLUMNS]])
            else:
                more += 1
    except csv.Error:
        return _text_view(text, problem="invalid-csv")
    if not rows:
        return FileView("csv")
    return FileView("csv", header=rows[0], rows=rows[1:], more_rows=more)
