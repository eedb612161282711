"""What the CLI prints, and how: rich on a terminal, plain lines everywhere else.

On a terminal (stdout a TTY, ``TERM`` not ``dumb``) tables and progress bars are rich's; without
one (CI, a pipe, a file) every display falls back to plain lines, one per fact or change, that
grep and diff well. ``--json`` prints the API's JSON as it came, for scripts. Errors go to
standard error, one line per field at fault; exit statuses are listed here.

Everything printed goes through :func:`printable` (or :func:`json_text` for ``--json``): much
of it is not the operator's own text (the service's answers, another operator's cancel reason,
CSV cells, blob names) and a terminal acts on control characters, so an ESC, OSC, CR, C1
control or bidi override in a value could forge a line, retitle the window or hide text. Every
character that :meth:`str.isprintable` refuses (Unicode's Other and Separator categories but
the space) is shown as its escape (``\\x1b``, ``\\u202e``) instead; letters of any script stay
as they are. Rich parses ``[...]`` as markup in plain strings: tables and progress columns take
:class:`rich.text.Text`, never markup. This module is the only one that prints
(tests/unit/test_dsrctl_output.py holds the others to it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dsrctl.client import ApiError

EXIT_OK: Final = 0
#: The API refused, a DSR failed, a verification broke, a CSV row was refused.
EXIT_FAILED: Final = 1
#: Wrong usage (click's own).
EXIT_USAGE: Final = 2
#: The service (or storage) could not be reached, or no token could be had.
EXIT_UNREACHABLE: Final = 3
#: ``watch`` gave up waiting: some DSR was still running at its deadline.
EXIT_STILL_RUNNING: Final = 4


_SHORT_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object) -> str:
    """``value`` as text a terminal only shows: each character that is not printable (C0 and
    C1 controls, DEL, format characters such as bidi overrides, line and paragraph separators,
    lone surrogates, unassigned code points) as its Python-style escape, all on one line."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(document: object) -> str:
    """``document`` as indented JSON whose strings escape what :func:`printable` would (as
    ``\\uXXXX``, so the JSON is the same once parsed); letters stay as they are."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    # json.dumps escapes C0 controls in strings but leaves DEL, C1, bidi overrides, U+2028 and
    # lone surrogates raw; outside strings it writes only ASCII, the indent's newlines included.
    return "".join(
        char if char.isprintable() or char == "\n" else _json_escape(char) for char in text
    )


def echo(text: object = "", *, err: bool = False) -> None:
    """One line, escaped (:func:`printable`), on standard output or (``err``) standard error."""
    click.echo(printable(text), err=err)


def echo_json(document: object, *, indent: bool = True) -> None:
    """A JSON document (``indent=False``: on one line, for JSON lines), escaped."""
    if indent:
        click.echo(json_text(document))
    else:
        click.echo(
            "".join(
                char if char.isprintable() else _json_escape(char)
                for char in json.dumps(document, ensure_ascii=False)
            )
        )


def console_line(console: Console, text: object) -> None:
    """One line through a rich console (above a live display): escaped, never markup."""
    console.print(Text(printable(text)), highlight=False)


def is_interactive(stream: Any = None) -> bool:
    """True when live displays make sense: a TTY that is not ``TERM=dumb``."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("TERM", "").lower() == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Output:
    """The one place the commands print through."""

    def __init__(self, *, json_mode: bool = False, interactive: bool | None = None) -> None:
        self.json_mode = json_mode
        self.interactive = is_interactive() if interactive is None else interactive
        # Created now, on the streams of now (a test runner swaps them per invocation).
        self.console = Console(highlight=False, force_terminal=self.interactive or None)

    def line(self, text: str = "") -> None:
        """One plain line on standard output (never rich markup), escaped."""
        echo(text)

    def info(self, text: str) -> None:
        """A note for people, on standard error (kept out of ``--json`` output)."""
        echo(text, err=True)

    def error(self, text: str) -> None:
        echo(f"error: {text}", err=True)

    def warning(self, text: str) -> None:
        echo(f"warning: {text}", err=True)

    def json(self, document: object) -> None:
        echo_json(document)

    def refusal(self, exc: ApiError) -> None:
        """An API refusal: one line, then one per field; with ``--json`` the problem too."""
        lines = exc.lines()
        self.error(lines[0])
        for rest in lines[1:]:
            echo(rest, err=True)
        if self.json_mode:
            self.json(exc.body if exc.body is not None else {"status": exc.status})

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table: rich's on a terminal, aligned plain columns elsewhere; cells escaped."""
        shown = [[printable(cell) for cell in row] for row in rows]
        if self.interactive:
            table = Table(*headers, header_style="bold", show_edge=False, pad_edge=False)
            for row in shown:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        widths = [len(h) for h in headers]
        for row in shown:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        for row in [list(headers), *shown]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.line("  ".join(cells).rstrip())

    def pairs(self, items: Sequence[tuple[str, str]]) -> None:
        """``name: value`` lines, names aligned."""
        width = max((len(name) for name, _ in items), default=0)
        for name, value in items:
            self.line(f"{name + ':':<{width + 1}} {value}")


# -- formatting the API's values ---------------------------------------------------------------
def moment(value: object) -> str:
    """An ISO timestamp as ``2026-12-31 09:00 UTC`` (``-`` for none)."""
    if not value:
        return "-"
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    offset = at.utcoffset()
    if offset is None:
        return at.strftime("%Y-%m-%d %H:%M")
    zone = "UTC" if offset.total_seconds() == 0 else at.strftime("%z")
    return f"{at.strftime('%Y-%m-%d %H:%M')} {zone}"


def days_left(doc: Mapping[str, Any]) -> str:
    """Days to the deadline, ``OVERDUE`` past it, ``-`` once it no longer runs."""
    if doc.get("overdue"):
        return "OVERDUE"
    value = doc.get("daysLeft")
    if value is None:
        return "-"
    return f"{value}!" if doc.get("deadlineWarning") else str(value)


def graph(doc: Mapping[str, Any]) -> str:
    """Graph's status and progress: ``running 40%`` (``-`` before the export is submitted)."""
    status = doc.get("graphStatus")
    progress = doc.get("progress")
    parts = [str(status)] if status else []
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        parts.append(f"{progress:g}%")
    return " ".join(parts) or "-"


def size(count: object) -> str:
    """Bytes in a readable unit."""
    if not isinstance(count, int | float) or isinstance(count, bool):
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop returns


def compact(value: object) -> str:
    """A nested value in one line."""
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
