"""Checkov over infra/, judged against infra/checkov-skips.toml (`make checkov`, in `make test`).

Run with the Checkov venv's interpreter (``.venv-checkov/bin/python infra/scripts/checkov.py``):
it runs that venv's ``checkov`` on every Bicep file under infra/ and then fails when

* a check fails on a resource that the skip file does not list for that check,
* the skip file lists a (check, resource) that no longer fails (a stale skip hides nothing and
  must go, so the list stays the list of what is actually accepted), or
* Checkov could not parse a file (it would then check nothing in it).

A skip names the check *and* the resources it is accepted for, so a new resource that fails the
same check is still a failure. Every skip has its reason in the file; tests/infra/test_checkov.py
checks the file's shape. Standard library only: the same module is imported by those tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parents[1]
SKIPS = INFRA / "checkov-skips.toml"

#: One Checkov result: (check id, "<file under infra/> <resource>").
Finding = tuple[str, str]


@dataclass(frozen=True)
class Skip:
    check: str
    resources: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Verdict:
    passed: list[Finding]
    failed: list[Finding]  # failed and not skipped
    skipped: list[Finding]  # failed and skipped, with a reason
    stale: list[Finding]  # skipped but not failing
    parsing_errors: list[str]

    @property
    def ok(self) -> bool:
        return not (self.failed or self.stale or self.parsing_errors)


def load_skips(path: Path = SKIPS) -> list[Skip]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Skip(check=item["check"], resources=tuple(item["resources"]), reason=item["reason"])
        for item in data.get("skip", [])
    ]


def resource_key(result: Mapping[str, Any]) -> str:
    """``modules/keyvault.bicep Microsoft.KeyVault/vaults.vault``: file under infra/, resource."""
    return f"{str(result['file_path']).lstrip('/')} {result['resource']}"


def _findings(results: Iterable[Mapping[str, Any]]) -> list[Finding]:
    return sorted({(str(r["check_id"]), resource_key(r)) for r in results})


def judge(report: Mapping[str, Any], skips: Iterable[Skip]) -> Verdict:
    """Sort one Checkov JSON report (``-o json``, Bicep framework) against the skip list."""
    results = report.get("results", {})
    accepted = {(skip.check, resource) for skip in skips for resource in skip.resources}
    failing = _findings(results.get("failed_checks", []))
    return Verdict(
        passed=_findings(results.get("passed_checks", [])),
        failed=[f for f in failing if f not in accepted],
        skipped=[f for f in failing if f in accepted],
        stale=sorted(accepted - set(failing)),
        parsing_errors=sorted(str(p) for p in results.get("parsing_errors", [])),
    )


def run_checkov(checkov: Path) -> dict[str, Any]:
    """Checkov's JSON report over infra/ (Bicep only; nothing is downloaded)."""
    command = [
        str(checkov),
        "--directory",
        str(INFRA),
        "--framework",
        "bicep",
        "--output",
        "json",
        "--skip-download",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    # Checkov exits 1 when any check fails; the report says which, and judge() decides.
    if done.returncode not in (0, 1) or not done.stdout.strip():
        sys.stderr.write(done.stderr)
        raise SystemExit(f"checkov did not produce a report (exit {done.returncode})")
    report = json.loads(done.stdout)
    if isinstance(report, list):  # one report per framework; only Bicep is asked for
        (report,) = report
    if not isinstance(report, dict):
        raise SystemExit("checkov's report is not a JSON object")
    if "results" not in report:  # no resources found at all: nothing was checked
        raise SystemExit(f"checkov found nothing to check: {report}")
    return report


def main() -> int:
    checkov = Path(sys.executable).parent / "checkov"
    if not checkov.exists():
        raise SystemExit(f"{checkov} not found: run this with the Checkov venv's python")
    skips = load_skips()
    verdict = judge(run_checkov(checkov), skips)
    for check, resource in verdict.skipped:
        print(f"skipped {check} {resource} (reason in {SKIPS.name})")
    for path in verdict.parsing_errors:
        print(f"PARSING ERROR {path}: Checkov checked nothing in it")
    for check, resource in verdict.stale:
        print(f"STALE SKIP {check} {resource}: it no longer fails; remove it from {SKIPS.name}")
    for check, resource in verdict.failed:
        print(f"FAILED {check} {resource}: fix it, or skip it with its reason in {SKIPS.name}")
    print(
        f"checkov: {len(verdict.passed)} passed, {len(verdict.failed)} failed, "
        f"{len(verdict.skipped)} skipped ({len(verdict.stale)} stale skips, "
        f"{len(verdict.parsing_errors)} parsing errors)"
    )
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
