"""The faces build no part: every client, store and signer comes from the composition root.

docs/architecture.md ("The composition root") states the rule as the import contracts allow
it: a face (intake, activities, orchestrations) may import an adapter's types, errors and
constants, but it builds none of the parts ``dsr_export.composition`` builds. import-linter
cannot tell an import from a construction, so this test reads the code: the classes the
composition root constructs, and every call in a face.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACES = ("intake", "activities", "orchestrations")


def _built_by_composition() -> set[str]:
    """The names of the adapter classes the composition root returns built, as parts."""
    tree = ast.parse((ROOT / "dsr_export" / "composition.py").read_text(encoding="utf-8"))
    adapters = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("dsr_export.adapters")
        for alias in node.names
    }
    returned = {
        node.value.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Return)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
    }
    return {name for name in adapters & returned if name[:1].isupper()}


def _face_modules() -> list[Path]:
    return sorted(path for face in FACES for path in (ROOT / face).rglob("*.py"))


def test_the_composition_root_builds_the_parts_this_test_knows():
    assert {"ExportStorage", "GraphClient", "EvidenceLog", "ReviewStore"} <= _built_by_composition()


@pytest.mark.parametrize("path", _face_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_face_builds_a_part_of_its_own(path: Path):
    parts = _built_by_composition()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    built = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for name in [_called_name(node.func)]
        if name in parts
    ]
    assert built == [], "take the part from dsr_export.composition instead"


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
