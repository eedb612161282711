"""No function of radon rank D or worse anywhere in the repository (issue 18).

Radon's cyclomatic complexity ranks A (1-5) to F (41+); D starts at 21. Rank C (11-20) is the
ceiling: a function past it has grown paths no reader holds at once, and the app's own limit
(ruff's C901 at 12, in pyproject.toml) is stricter still. In test modules ``assert`` statements
are not counted (radon's ``no_assert``): a test's checks are not paths through it, and counting
them would push splitting well-named scenario tests into fragments.

The walk covers every Python file of the repository but the virtual environments and installed
packages; ``EXEMPT`` would list a file exempted with its reason (none is).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_rank, cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parents[2]
_SKIPPED_DIRS = {".venv", ".venv-checkov", ".venv-azmodels", "node_modules", ".git", "build"}
_WORST_ALLOWED = "C"

#: Files whose rank-D functions are exempt (none: the issue-18 refactor landed).
EXEMPT: set[str] = set()


def _python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if _SKIPPED_DIRS.isdisjoint(relative.parts) and not relative.parts[0].startswith("."):
            yield path


def _too_complex(path: Path) -> list[str]:
    is_test = path.name.startswith("test_")
    blocks = cc_visit(path.read_text(encoding="utf-8"), no_assert=is_test)
    # The blocks are every function and method (and each class, whose figure sums its methods).
    functions = [block for block in blocks if isinstance(block, Function)]
    return [
        f"{f.fullname} {cc_rank(f.complexity)} ({f.complexity})"
        for f in functions
        if cc_rank(f.complexity) > _WORST_ALLOWED
    ]


def test_no_function_is_rank_d_or_worse() -> None:
    offenders = []
    walked = 0
    for path in _python_files():
        relative = path.relative_to(ROOT).as_posix()
        walked += 1
        if relative in EXEMPT:
            continue
        offenders += [f"{relative}: {found}" for found in _too_complex(path)]
    assert walked > 200, f"the walk found only {walked} files"
    assert offenders == [], "radon rank D or worse:\n  " + "\n  ".join(offenders)


def test_the_check_sees_a_rank_d_function(tmp_path: Path) -> None:
    branches = "\n".join(f"    if x == {n}:\n        return {n}" for n in range(21))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def wide(x):\n{branches}\n    return -1\n")
    assert _too_complex(sample) == ["wide D (22)"]
