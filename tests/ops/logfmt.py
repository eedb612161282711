"""What ``parse-kv ... with (pair_delimiter=" ", kv_delimiter="=", quote='"', escape="\\")``
reads out of one of the app's log lines, in Python, for tests.

Kusto cannot run offline, so this is the reading the queries rely on, written down: the line is
split on spaces outside quotes; each piece with a ``=`` is a key and a value; a value in quotes
loses them and its escapes (``\\x`` reads as ``x``); a piece without ``=`` (the event name)
is not a pair; the first occurrence of a key wins. Also the one place that reads the offline
host's log file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: ``%(asctime)s %(levelname)s %(name)s: %(message)s`` (devhost/__main__.py).
_HOST_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$"
)


def parse_kv(message: str) -> dict[str, str]:
    """The key/value pairs of ``message``, as the queries' ``parse-kv`` reads them."""
    pairs: dict[str, str] = {}
    for piece in _pieces(message):
        key, sep, value = piece.partition("=")
        if not sep or not key:
            continue
        pairs.setdefault(key, _unquote(value))
    return pairs


def event_of(message: str) -> str:
    """``tostring(split(message, " ")[0])``: the event name."""
    return message.split(" ", 1)[0]


def _pieces(message: str) -> Iterator[str]:
    piece: list[str] = []
    quoted = escaped = False
    for ch in message:
        if escaped:
            piece.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            piece.append(ch)
            escaped = True
        elif ch == '"':
            piece.append(ch)
            quoted = not quoted
        elif ch == " " and not quoted:
            if piece:
                yield "".join(piece)
            piece = []
        else:
            piece.append(ch)
    if piece:
        yield "".join(piece)


def _unquote(value: str) -> str:
    if not (len(value) >= 2 and value[0] == value[-1] == '"'):
        return value
    out: list[str] = []
    chars = iter(value[1:-1])
    for ch in chars:
        if ch == "\\":
            out.append(next(chars, ""))
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class HostLine:
    level: str
    logger: str
    message: str


def host_lines(log: Path) -> list[HostLine]:
    """The log records of an offline host's log file (continuation lines are dropped)."""
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _HOST_LINE.match(line)
        if match:
            found.append(HostLine(match["level"], match["logger"], match["message"]))
    return found
