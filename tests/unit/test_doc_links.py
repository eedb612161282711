"""Every link between the repository's documents leads somewhere: the file exists and, when the
link names a section, that section's heading does (GitHub's anchor rule). A renamed heading
otherwise leaves operators at the top of a long page in the middle of an incident."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
#: ``[text](target)``, not images, not inside inline code.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(path: Path) -> list[str]:
    """The document's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to
    hyphens (hyphens and underscores kept)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a document's headings make (a repeated heading gets ``-1``, ``-2`` ...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _prose(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def _links(path: Path) -> list[str]:
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for line in _prose(path))
    return LINK.findall(text)


def _broken(path: Path) -> list[str]:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http(s), mailto: judged by nobody here
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such section)")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_in_the_document_leads_somewhere(document: Path) -> None:
    assert _broken(document) == []


def test_the_anchor_rule_is_githubs() -> None:
    assert slug("Legal deadlines: at risk and overdue") == "legal-deadlines-at-risk-and-overdue"
    assert slug("`make test` and CI") == "make-test-and-ci"
    assert slug("Many tenants: the registry, and what comes next") == (
        "many-tenants-the-registry-and-what-comes-next"
    )


def test_a_link_to_a_missing_section_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\nSee [b](b.md#gone) and [c](c.md).\n")
    (tmp_path / "b.md").write_text("# Here\n")
    assert _broken(tmp_path / "a.md") == ["b.md#gone (no such section)", "c.md (no such file)"]
