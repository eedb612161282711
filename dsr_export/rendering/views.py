"""A file of the export as a page shows it: JSON as tables and trees, CSV as a table, text as
text, a zip as its listing; anything else (or anything that cannot be read) as a note.

Every view is bounded (rows, columns, depth, characters), so one huge or hostile file cannot
make a page too large to open; what is cut is counted and said. Nothing here produces markup:
the templates render these values, escaped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from dsr_export.domain.archive import Listing

MAX_ROWS: Final = 500
MAX_COLUMNS: Final = 24
MAX_DEPTH: Final = 8
MAX_TEXT: Final = 200_000
MAX_ITEMS: Final = 200

Shape = Literal["scalar", "object", "table", "list"]


@dataclass
class Node:
    """A JSON value as a page shows it: a scalar; an object (key, node pairs); a list of
    objects as a table (columns, rows of nodes); any other list (nodes). ``more`` counts
    what was left out."""

    shape: Shape
    value: str = ""
    kind: str = "string"
    items: list[tuple[str, Node]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Node]] = field(default_factory=list)
    elements: list[Node] = field(default_factory=list)
    more: int = 0


def _scalar(value: Any) -> Node:
    if value is None:
        return Node("scalar", "null", "null")
    if isinstance(value, bool):
        return Node("scalar", "true" if value else "false", "bool")
    if isinstance(value, int | float):
        return Node("scalar", repr(value) if isinstance(value, float) else str(value), "number")
    text = str(value)
    return Node("scalar", text if len(text) <= 2000 else text[:2000] + "…", "string")


def json_node(value: Any, depth: int = 0) -> Node:
    """``value`` as a bounded tree of nodes."""
    if depth >= MAX_DEPTH and isinstance(value, dict | list):
        return Node("scalar", json.dumps(value, ensure_ascii=False)[:2000], "string")
    if isinstance(value, dict):
        keys = list(value)
        return Node(
            "object",
            items=[(str(k), json_node(value[k], depth + 1)) for k in keys[:MAX_ITEMS]],
            more=max(0, len(keys) - MAX_ITEMS),
        )
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            columns: list[str] = []
            for item in value[:MAX_ROWS]:
                for key in item:
                    if key not in columns and len(columns) < MAX_COLUMNS:
                        columns.append(str(key))
            rows = [
                [
                    json_node(item.get(col), depth + 1) if col in item else Node("scalar")
                    for col in columns
                ]
                for item in value[:MAX_ROWS]
            ]
            return Node("table", columns=columns, rows=rows, more=max(0, len(value) - MAX_ROWS))
        return Node(
            "list",
            elements=[json_node(item, depth + 1) for item in value[:MAX_ITEMS]],
            more=max(0, len(value) - MAX_ITEMS),
        )
    return _scalar(value)


@dataclass
class FileView:
    """What a file page shows of one file (``mode`` picks the template's branch)."""

    mode: Literal["json", "csv", "text", "zip", "none"]
    problem: str | None = None
    tree: Node | None = None
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
            return FileView("json", tree=json_node(json.loads(text)))
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
