"""The app's shape rules that ruff cannot state (issue 18), run by ``make lint``.

- No function of the app longer than 50 lines (from ``def`` to its end, docstring included):
  past that a reader no longer sees a function whole, and splitting it names its steps.
- No two app modules with the same leaf name, and no two classes with the same name: a name
  says what a thing is only if it says it once (``evidence``, ``Outcome`` and ``_Listed`` each
  meant two or three things before).

The app is what ships and what operators run: ``function_app.py``, ``activities/``,
``orchestrations/``, ``intake/``, ``dsr_export/`` and ``dsrctl/``. Tests and the offline host are
held to ruff's and radon's limits only. Exit 1 naming every offender.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ("function_app.py", "activities", "orchestrations", "intake", "dsr_export", "dsrctl")
MAX_FUNCTION_LINES = 50
_PACKAGE_FILES = {"__init__", "__main__"}


def app_files(root: Path = ROOT) -> Iterator[Path]:
    """Every Python file of the app, in a stable order."""
    for part in APP:
        path = root / part
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def problems(root: Path = ROOT) -> list[str]:
    """Every breach of the rules above, one line each (empty when the app keeps them)."""
    leaves: dict[str, list[str]] = defaultdict(list)
    classes: dict[str, list[str]] = defaultdict(list)
    found: list[str] = []
    for path in app_files(root):
        relative = path.relative_to(root).as_posix()
        if path.stem not in _PACKAGE_FILES:
            leaves[path.stem].append(relative)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), relative)):
            if isinstance(node, ast.ClassDef):
                classes[node.name].append(f"{relative}:{node.lineno}")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{relative}:{node.lineno} {node.name} has {lines} lines")
    found += [f"modules named {leaf!r}: {', '.join(p)}" for leaf, p in leaves.items() if len(p) > 1]
    found += [
        f"classes named {name!r}: {', '.join(p)}" for name, p in classes.items() if len(p) > 1
    ]
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
