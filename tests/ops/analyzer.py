"""Run Kusto's analyzer (tools/kql/check.js, npm @kusto/language-service-next) over queries.

One Node process for a whole batch (loading the analyzer is the slow part). Node and the npm
package are required: without them the check fails, it never passes by skipping.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

from tests.ops.kql_sources import ROOT, Query

CHECKER = ROOT / "tools" / "kql" / "check.js"
SCHEMA = ROOT / "tools" / "kql" / "appinsights-schema.json"
WARNINGS = ROOT / "tools" / "kql" / "accepted-warnings.toml"
PACKAGE = ROOT / "node_modules" / "@kusto" / "language-service-next" / "package.json"


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    code: str
    message: str
    line: int


def analyze(queries: Sequence[Query]) -> dict[str, list[Diagnostic]]:
    """origin -> the analyzer's diagnostics for that query."""
    node = shutil.which("node")
    assert node, "Node.js is needed for the KQL check (make node)"
    assert PACKAGE.exists(), "@kusto/language-service-next is not installed: run `make node`"
    batch = {"queries": [{"id": q.origin, "text": q.text} for q in queries]}
    done = subprocess.run(
        [node, str(CHECKER), str(SCHEMA)],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"tools/kql/check.js failed:\n{done.stderr[-3000:]}"
    results = json.loads(done.stdout)["results"]
    return {
        r["id"]: [
            Diagnostic(d["severity"], d["code"], d["message"], d["line"]) for d in r["diagnostics"]
        ]
        for r in results
    }


@functools.cache
def analyzed(queries: tuple[Query, ...]) -> dict[str, list[Diagnostic]]:
    return analyze(queries)


@dataclass(frozen=True)
class AcceptedWarning:
    origin: str
    code: str
    reason: str


def accepted_warnings() -> list[AcceptedWarning]:
    data = tomllib.loads(WARNINGS.read_text(encoding="utf-8"))
    return [
        AcceptedWarning(item["origin"], item["code"], item["reason"])
        for item in data.get("warning", [])
    ]
