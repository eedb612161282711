"""Every KQL query the project ships, found where it lives, for Kusto's analyzer (tools/kql).

- the workbook's query items and parameter queries (infra/modules/workbook.json, deployed by
  workbook.bicep);
- the scheduled query rules' queries: each is a ``.kql`` file loaded by a Bicep file
  (``loadTextContent``, infra/modules/alerts.bicep);
- the fenced ```kusto and ```kql blocks of docs/operations.md and README.md.

Each query has an ``origin`` that names the file and the item (``infra/modules/workbook.json
#graph-errors``, ``docs/operations.md:412``) so a failure says where to look. The finders are
deliberately independent of the places they read, and tests/ops/test_kql.py counts the
queries a second way, so a query added somewhere new is not skipped unseen.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
WORKBOOK = INFRA / "modules" / "workbook.json"
DOCS = (ROOT / "docs" / "operations.md", ROOT / "README.md")
KQL_FENCES = ("kusto", "kql")
_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[\w+-]*)\s*$")
_LOAD = re.compile(r"loadTextContent\('(?P<path>[^']+\.kql)'\)")


@dataclass(frozen=True)
class Query:
    origin: str
    text: str


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def workbook_queries() -> list[Query]:
    """The query items, and the queries that fill a parameter's choices (the Tenant filter)."""
    doc = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    items = [
        Query(f"{relative(WORKBOOK)}#{item['name']}", item["content"]["query"])
        for item in doc["items"]
        if item["type"] == 3
    ]
    parameters = [
        Query(f"{relative(WORKBOOK)}#{item['name']}/{parameter['name']}", parameter["query"])
        for item in doc["items"]
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
        if "query" in parameter
    ]
    return items + parameters


def bicep_kql_files() -> dict[Path, list[Path]]:
    """``.kql`` file -> the Bicep files that load it."""
    loaded: dict[Path, list[Path]] = {}
    for bicep in sorted(INFRA.rglob("*.bicep")):
        for match in _LOAD.finditer(bicep.read_text(encoding="utf-8")):
            loaded.setdefault((bicep.parent / match["path"]).resolve(), []).append(bicep)
    return loaded


def alert_queries() -> list[Query]:
    return [
        Query(relative(path), path.read_text(encoding="utf-8"))
        for path in sorted(bicep_kql_files())
    ]


@dataclass(frozen=True)
class Fence:
    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str


def fences(path: Path) -> Iterator[Fence]:
    """Every fenced code block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start: int | None = None
    info = ""
    indent = ""
    for number, line in enumerate(lines, 1):
        match = _FENCE.match(line)
        if start is None:
            if match:
                start, info, indent = number, match["info"], match["indent"]
        elif match and match["info"] == "" and match["indent"] == indent:
            body = [text[len(indent) :] for text in lines[start : number - 1]]
            yield Fence(path, start, info, "\n".join(body))
            start = None
    if start is not None:
        raise AssertionError(f"{relative(path)}:{start}: a code block is never closed")


def doc_queries() -> list[Query]:
    return [
        Query(f"{relative(fence.path)}:{fence.line}", fence.text)
        for path in DOCS
        for fence in fences(path)
        if fence.info in KQL_FENCES
    ]


@functools.cache
def all_queries() -> tuple[Query, ...]:
    found = [*workbook_queries(), *alert_queries(), *doc_queries()]
    origins = [q.origin for q in found]
    assert len(origins) == len(set(origins)), "two queries with one origin"
    return tuple(found)


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
