"""Checkov's place in `make test`: its own venv, one skip list where every skip has its reason,
and a judge that fails on anything else.

Checkov itself runs in `make checkov` (its venv is not this one); these tests check the skip
file and the judging logic of infra/scripts/checkov.py, which is standard library only.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra.bicep_model import INFRA, ROOT, resources, template

SCRIPT = INFRA / "scripts" / "checkov.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_checkov", SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


checkov = _load_script()


def test_every_skip_has_a_reason_and_names_real_resources() -> None:
    skips = checkov.load_skips()
    assert skips, "an empty skip list would make this test vacuous; delete the test instead"
    seen: set[tuple[str, str]] = set()
    for skip in skips:
        assert re.fullmatch(r"CKV2?_AZURE_\d+", skip.check), skip.check
        reason = " ".join(skip.reason.split())
        assert len(reason) >= 80, f"{skip.check}: a reason a reviewer can check, please"
        assert skip.resources, f"{skip.check}: a skip names the resources it is accepted for"
        for resource in skip.resources:
            assert (skip.check, resource) not in seen, f"{skip.check} {resource} twice"
            seen.add((skip.check, resource))
            path, _, address = resource.partition(" ")
            type_, _, symbol = address.rpartition(".")
            assert (INFRA / path).is_file(), f"{skip.check}: no file {path}"
            found = resources(template(path))
            assert symbol in found, f"{skip.check}: {path} has no resource {symbol}"
            assert found[symbol]["type"] == type_, f"{skip.check}: {resource}"


def test_skips_are_unique_per_check() -> None:
    checks = [skip.check for skip in checkov.load_skips()]
    assert len(checks) == len(set(checks)), "one entry per check, listing its resources"


def _result(check: str, resource: str, path: str) -> dict[str, Any]:
    return {"check_id": check, "resource": resource, "file_path": path}


def _report(**results: list[Any]) -> dict[str, Any]:
    return {"results": {"passed_checks": [], "failed_checks": [], **results}}


def test_judge_fails_an_unskipped_failure_and_passes_a_skipped_one() -> None:
    skip = checkov.Skip("CKV_AZURE_1", ("modules/a.bicep T.x",), "reason")
    report = _report(
        passed_checks=[_result("CKV_AZURE_2", "T.x", "/modules/a.bicep")],
        failed_checks=[
            _result("CKV_AZURE_1", "T.x", "/modules/a.bicep"),
            # Same check, another resource: not covered by the skip.
            _result("CKV_AZURE_1", "T.y", "/modules/a.bicep"),
        ],
    )
    verdict = checkov.judge(report, [skip])
    assert verdict.skipped == [("CKV_AZURE_1", "modules/a.bicep T.x")]
    assert verdict.failed == [("CKV_AZURE_1", "modules/a.bicep T.y")]
    assert verdict.passed == [("CKV_AZURE_2", "modules/a.bicep T.x")]
    assert not verdict.ok


def test_judge_fails_a_stale_skip_and_a_parsing_error() -> None:
    skip = checkov.Skip("CKV_AZURE_1", ("modules/a.bicep T.x",), "reason")
    stale = checkov.judge(_report(), [skip])
    assert stale.stale == [("CKV_AZURE_1", "modules/a.bicep T.x")]
    assert not stale.ok
    broken = checkov.judge(_report(parsing_errors=["/work/infra/main.bicep"]), [])
    assert broken.parsing_errors == ["/work/infra/main.bicep"]
    assert not broken.ok
    assert checkov.judge(_report(), []).ok


def test_make_test_runs_checkov_in_its_own_pinned_venv() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:(.*)$", makefile, flags=re.M)
    assert test_target
    assert "checkov" in test_target.group(1).split()
    assert ".venv-checkov" in makefile
    assert "--no-deps -r requirements-checkov.txt" in makefile
    assert "infra/scripts/checkov.py" in makefile
    pins = [
        line
        for line in (ROOT / "requirements-checkov.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in pins:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.\-+]+", line), f"not pinned: {line}"
    names = {line.split("==")[0].lower(): line.split("==")[1] for line in pins}
    assert "checkov" in names
    # checkov asks for pycep-parser 0.5.1, which cannot parse `extension` or `int?`.
    major, minor = (int(part) for part in names["pycep-parser"].split(".")[:2])
    assert (major, minor) >= (0, 7)


@pytest.mark.parametrize("ignore_file", [".gitignore", ".funcignore"])
def test_the_checkov_venv_is_neither_committed_nor_deployed(ignore_file: str) -> None:
    assert ".venv-checkov/" in (ROOT / ignore_file).read_text().splitlines()


def test_script_runs_the_checkov_next_to_its_interpreter() -> None:
    text = SCRIPT.read_text()
    assert 'Path(sys.executable).parent / "checkov"' in text
    assert '"--skip-download"' in text, "no network: nothing may be downloaded"
    assert isinstance(checkov.INFRA, Path)
    assert checkov.INFRA == INFRA
