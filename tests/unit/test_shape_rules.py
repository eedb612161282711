"""``tools/shape/check.py`` (run by ``make lint``) catches what it is there for: a long function,
two modules with one leaf name, two classes with one name; and the app keeps the rules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shape_check", ROOT / "tools/shape/check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plant(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_each_planted_breach_is_named(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(50))
    _plant(tmp_path, "function_app.py", "")
    _plant(tmp_path, "intake/evidence.py", f"def long_one() -> None:\n{body}")
    _plant(tmp_path, "dsr_export/domain/evidence.py", "class Outcome:\n    pass\n")
    _plant(tmp_path, "activities/steps.py", "class Outcome:\n    pass\n")
    _plant(tmp_path, "dsrctl/__init__.py", "")
    _plant(tmp_path, "orchestrations/__init__.py", "")

    found = _checker().problems(tmp_path)

    assert any("intake/evidence.py:1 long_one has 51 lines" in line for line in found)
    assert any(line.startswith("modules named 'evidence'") for line in found)
    assert any(line.startswith("classes named 'Outcome'") for line in found)
    assert not any("__init__" in line for line in found), "package files share a name by design"
    assert len(found) == 3


def test_a_fifty_line_function_is_allowed(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(49))
    _plant(tmp_path, "intake/routes.py", f"def just_fits() -> None:\n{body}")
    assert _checker().problems(tmp_path) == []


def test_the_app_keeps_the_rules() -> None:
    assert _checker().problems() == []
