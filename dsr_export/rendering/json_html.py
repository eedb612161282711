"""A parsed JSON file as the HTML fragment its page shows: objects as two-column tables, lists
of objects as tables, other lists as trees, scalars as typed spans.

Written straight to a list of strings rather than through a template macro per value: a large
export has thousands of JSON files of hundreds of rows each, and a macro call (and a node
object) per cell was most of the time its pages took (``make bench``). The markup is the same
the templates use elsewhere, and every value, key and column from the export is escaped (the
five characters :func:`markupsafe.escape` escapes) after its bidi controls are made visible
(:func:`visible_controls`): text, never markup, and no control that could make the page read
other than it is.

Bounded, so one huge or hostile file cannot make a page too large to open or too slow to
build: at most :data:`MAX_ROWS` rows per table, :data:`MAX_ITEMS` fields or items per object or
list, :data:`MAX_DEPTH` levels (deeper values are shown as their JSON text, cut), 2,000
characters per value, and :data:`MAX_VALUES` values per page in all; what is cut is counted and
said where it was cut, and the raw file under ``data/`` holds all of it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any, Final, Literal

from markupsafe import Markup

MAX_ROWS: Final = 500
MAX_COLUMNS: Final = 24
MAX_DEPTH: Final = 8
MAX_ITEMS: Final = 200
#: Values written on one page in all (cells, fields, items): past it, each table, object and
#: list says how many of its entries are not shown.
MAX_VALUES: Final = 25_000
MAX_VALUE_CHARS: Final = 2000

More = Literal["rows", "fields", "items"]
#: ``(what, count)`` -> the sentence that says ``count`` rows / fields / items are not shown.
MoreText = Callable[[More, int], str]

_CONTROLS: Final = {
    code: f"[U+{code:04X}]"
    for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
}


def visible_controls(value: Any) -> Any:
    """Every value a page prints, with bidi controls shown as ``[U+202E]``: a name from the
    export can never make the page read other than it is (escaping stops markup, not this)."""
    if isinstance(value, str) and not isinstance(value, Markup) and not value.isascii():
        # Every control shown is outside ASCII: an ASCII value (most of them) is left as is.
        return value.translate(_CONTROLS)
    return value


def _text(value: str) -> str:
    """``value`` escaped for HTML text and attributes, bidi controls shown."""
    if not value.isascii():
        value = value.translate(_CONTROLS)
    return html.escape(value)  # & < > " ' (what markupsafe.escape escapes), as plain str


class _Writer:
    def __init__(self, more_text: MoreText) -> None:
        self.out: list[str] = []
        self.budget = MAX_VALUES
        self._more_text = more_text

    def more(self, what: More, count: int) -> None:
        if count > 0:
            self.out.append(f'<p class="muted">{_text(self._more_text(what, count))}</p>')

    def scalar(self, value: Any) -> None:
        self.budget -= 1
        if type(value) is str:  # most values: tested first
            if len(value) > MAX_VALUE_CHARS:
                value = value[:MAX_VALUE_CHARS] + "…"
            self.out.append(f'<span class="kind-string">{_text(value)}</span>')
        elif value is None:
            self.out.append('<span class="kind-null null">null</span>')
        elif value is True or value is False:
            self.out.append(f'<span class="kind-bool">{"true" if value else "false"}</span>')
        elif isinstance(value, int | float):
            text = repr(value) if isinstance(value, float) else str(value)
            self.out.append(f'<span class="kind-number">{text}</span>')
        else:
            self.scalar(str(value))
            self.budget += 1

    def value(self, value: Any, depth: int) -> None:
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            self.scalar(json.dumps(value, ensure_ascii=False)[:MAX_VALUE_CHARS])
        elif isinstance(value, dict):
            self.object(value, depth)
        elif isinstance(value, list):
            if value and all(isinstance(item, dict) for item in value):
                self.table(value, depth)
            else:
                self.list(value, depth)
        else:
            self.scalar(value)

    def object(self, value: dict[Any, Any], depth: int) -> None:
        out = self.out
        out.append('<table class="json-object"><tbody>')
        shown = 0
        for key, child in value.items():
            if shown >= MAX_ITEMS or self.budget <= 0:
                break
            out.append(f'<tr><th scope="row">{_text(str(key))}</th><td>')
            self.value(child, depth + 1)
            out.append("</td></tr>")
            shown += 1
        out.append("</tbody></table>")
        self.more("fields", len(value) - shown)

    def table(self, rows: list[dict[Any, Any]], depth: int) -> None:
        columns: dict[str, None] = {}
        for row in rows[:MAX_ROWS]:
            for key in row:
                if len(columns) >= MAX_COLUMNS:
                    break
                columns.setdefault(str(key), None)
        names = list(columns)
        out = self.out
        out.append('<table class="json-table"><thead><tr>')
        out.extend(f'<th scope="col">{_text(name)}</th>' for name in names)
        out.append("</tr></thead><tbody>")
        shown = 0
        for row in rows:
            if shown >= MAX_ROWS or self.budget <= 0:
                break
            out.append("<tr>")
            for name in names:
                out.append("<td>")
                if name in row:
                    self.value(row[name], depth + 1)
                else:
                    out.append('<span class="kind-string"></span>')
                out.append("</td>")
            out.append("</tr>")
            shown += 1
        out.append("</tbody></table>")
        self.more("rows", len(rows) - shown)

    def list(self, items: list[Any], depth: int) -> None:
        out = self.out
        out.append('<ul class="tree">')
        shown = 0
        for item in items:
            if shown >= MAX_ITEMS or self.budget <= 0:
                break
            out.append("<li>")
            self.value(item, depth + 1)
            out.append("</li>")
            shown += 1
        out.append("</ul>")
        self.more("items", len(items) - shown)


def json_html(value: Any, more_text: MoreText) -> Markup:
    """``value`` (parsed JSON) as an escaped, bounded HTML fragment."""
    writer = _Writer(more_text)
    writer.value(value, 0)
    return Markup("".join(writer.out))  # noqa: S704 - every piece from the export is escaped
