"""The layers hold where import-linter cannot look: what importing a module loads at run time,
and where the step contract's names and keys are spelled.

import-linter (``make lint``) checks the static import graph. These tests check the two things
it does not see: the modules actually loaded by importing the orchestrator and the app (lazy
imports, transitive SDK imports), and string literals that would bypass the step contract.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsr_export.domain import steps

ROOT = Path(__file__).resolve().parents[2]
#: What an orchestrator must never load (I/O libraries and the Azure SDKs that do I/O).
IO_MODULES = ("requests", "urllib3", "azure.core", "azure.storage", "azure.identity")


def _loaded_after(module: str) -> list[str]:
    probe = f"import sys, json, {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def _offending(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_importing_the_orchestrator_loads_no_io_library():
    loaded = _loaded_after("orchestrations.export_personal_data")
    assert _offending(loaded, IO_MODULES) == []
    assert _offending(loaded, ("dsr_export.adapters", "dsr_export.composition")) == []
    assert "azure.durable_functions" in loaded  # the probe did import something real


def test_the_sdks_per_request_http_log_is_kept_at_warning():
    probe = (
        "import logging, function_app\n"
        "print(logging.getLogger('azure.core.pipeline.policies.http_logging_policy').level)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert int(out) == 30  # logging.WARNING


def test_importing_the_app_loads_no_sdk_until_first_use_and_never_the_offline_host():
    loaded = _loaded_after("function_app")
    assert _offending(loaded, IO_MODULES) == []
    assert _offending(loaded, ("devhost", "tests", "testsupport", "bench")) == []
    assert "activities.export_steps" in loaded


# -- the step contract is the only place its names and keys are spelled --------------------------
def _wire_keys() -> set[str]:
    keys: set[str] = set()
    for step in steps.STEPS.values():
        for shape in (step.input_type, step.result_type):
            keys |= {steps._camel(f.name) for f in dataclasses.fields(shape)}
    return keys


#: Keys of step inputs and results that no other wire shape uses (``requestId``, ``error``,
#: ``manifest`` ... are also fields of status documents and the orchestration's output;
#: ``userId`` is Graph's and the orchestration input's, ``messageId`` a queue message's).
STEP_ONLY_KEYS = {
    "retryAfterSeconds",
    "requestInfoExists",
    "settleSeconds",
    "operationUrl",
    "writeManifest",
    "sasExpiresAt",
    "delivered",
    "permanent",
    "outcome",
}
#: Where the app's code lives, and the tests and benchmarks that drive it.
SCANNED = (
    "orchestrations",
    "activities",
    "intake",
    "dsr_export",
    "bench",
    "tests",
    "testsupport",
    "devhost",
)
#: The contract itself, and this test.
EXEMPT = {Path("dsr_export/domain/steps.py"), Path("tests/unit/test_layers.py")}


def test_the_key_list_is_a_subset_of_the_contract():
    assert _wire_keys() >= STEP_ONLY_KEYS


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def _sources() -> list[Path]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative not in EXEMPT:
                found.append(relative)
    return found


@pytest.mark.parametrize("relative", _sources(), ids=str)
def test_no_activity_name_or_step_key_is_spelled_outside_the_contract(relative: Path):
    names = set(steps.STEPS)
    keys = STEP_ONLY_KEYS
    spelled = [
        f"{relative}:{line}: {value!r}"
        for line, value in _literals(ROOT / relative)
        if value in names or value in keys
    ]
    assert spelled == []


def test_the_scan_sees_a_spelled_name(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text('x = {"settleSeconds": 1}\ncall("submit_export")\n"""submit_export"""\n')
    found = [value for _, value in _literals(sample)]
    assert "settleSeconds" in found
    assert "submit_export" in found
