"""Every KQL query the project ships passes Kusto's own analyzer, against the real schema.

A query over a misspelled column or a misused operator fails only when someone opens the panel,
or never, when it is an alert rule that then cannot fire. So `make test` runs the analyzer the
Azure portal's editor uses (npm @kusto/language-service-next, tools/kql/check.js) over every
query, in one Node process, against the Application Insights tables written down once in
tools/kql/appinsights-schema.json. Zero errors; a warning only when tools/kql/accepted-warnings.toml
lists it with its reason. And the check is checked: a misspelled column must be reported, and the
queries are counted a second way so that one in a new place is not skipped.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import resources, template
from tests.ops.analyzer import SCHEMA, accepted_warnings, analyze, analyzed
from tests.ops.kql_sources import (
    DOCS,
    INFRA,
    KQL_FENCES,
    WORKBOOK,
    Query,
    alert_queries,
    all_queries,
    bicep_kql_files,
    doc_queries,
    fences,
    relative,
    walk,
    workbook_queries,
)

QUERIES = all_queries()
#: Looks like the first line of a KQL query over one of our tables.
_KQL_START = re.compile(
    r"^\s*(traces|requests|dependencies|exceptions|customEvents|union\b.*|let \w+ = .*)\s*(\||$)",
    re.M,
)
_KQL_PIPE = re.compile(r"^\s*\| (where|extend|summarize|project|parse-kv|order by)\b", re.M)


def _report(query: Query, kinds: set[str]) -> list[str]:
    return [
        f"{query.origin} (query line {d.line}): {d.severity} {d.code}: {d.message}"
        for d in analyzed(QUERIES)[query.origin]
        if d.severity in kinds
    ]


@pytest.mark.parametrize("query", QUERIES, ids=[q.origin for q in QUERIES])
def test_query_has_no_analyzer_error(query: Query) -> None:
    errors = _report(query, {"Error"})
    assert not errors, "\n".join(errors)


def test_every_warning_is_fixed_or_accepted_with_a_reason() -> None:
    accepted = {(w.origin, w.code) for w in accepted_warnings()}
    assert all(w.reason.strip() for w in accepted_warnings())
    found = {
        (origin, d.code): f"{origin} (query line {d.line}): {d.code}: {d.message}"
        for origin, diagnostics in analyzed(QUERIES).items()
        for d in diagnostics
        if d.severity == "Warning"
    }
    unlisted = [text for key, text in found.items() if key not in accepted]
    assert not unlisted, "fix, or accept in tools/kql/accepted-warnings.toml:\n" + "\n".join(
        unlisted
    )
    stale = accepted - set(found)
    assert not stale, f"accepted warnings that no longer occur (remove them): {sorted(stale)}"


def test_the_analyzer_reports_a_misspelled_column_and_table() -> None:
    """The check must be able to fail: with no schema or a broken bridge, everything passes."""
    results = analyze(
        [
            Query("column", 'traces | where mesage has "x"'),
            Query("table", 'trace | where message has "x"'),
            Query("good", 'traces | where message has "x" | project timestamp, severityLevel'),
        ]
    )
    column = [d for d in results["column"] if d.severity == "Error"]
    assert column, "a misspelled column passed the analyzer"
    assert "'mesage'" in column[0].message
    assert "does not refer to any known column" in column[0].message
    assert any(d.severity == "Error" and "'trace'" in d.message for d in results["table"])
    assert results["good"] == []


def test_the_schema_holds_the_tables_queried_with_real_column_names() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert set(schema["tables"]) == {
        "traces",
        "requests",
        "dependencies",
        "exceptions",
        "customEvents",
    }
    common = schema["common"]
    assert common["timestamp"] == "datetime"
    assert common["itemCount"] == "int"
    assert {"operation_Id", "operation_ParentId", "cloud_RoleName", "customDimensions"} <= set(
        common
    )
    assert schema["tables"]["traces"] == {"message": "string", "severityLevel": "int"}
    assert schema["tables"]["requests"]["success"] == "string"  # "True"/"False" in classic AI
    # A column the workspace tables spell differently is not accepted here.
    results = analyze([Query("workspace", "traces | project TimeGenerated, Message")])
    assert len([d for d in results["workspace"] if d.severity == "Error"]) == 2


# ---------------------------------------------------------------------------------------------
# Finding every query (counted a second way, so a new one is not skipped)


def test_every_workbook_query_is_found() -> None:
    doc = json.loads(WORKBOOK.read_text())
    everywhere = [value for key, value in walk(doc) if key == "query"]
    assert len(everywhere) == len(workbook_queries()) >= 18
    assert {q.text for q in workbook_queries()} == set(everywhere)


def test_every_alert_query_is_a_kql_file_loaded_by_the_bicep() -> None:
    loaded = bicep_kql_files()
    on_disk = {p.resolve() for p in INFRA.rglob("*.kql")}
    assert set(loaded) == on_disk, "a .kql file that no Bicep loads, or a load of a missing file"
    assert len(alert_queries()) >= 6
    # No KQL written inline in a Bicep file, where the analyzer would not see it.
    for bicep in sorted(INFRA.rglob("*.bicep")):
        text = bicep.read_text()
        assert not _KQL_PIPE.search(text), f"{relative(bicep)}: inline KQL; put it in a .kql file"
    # Every scheduled query rule's query comes from one of those files.
    doc = template("modules/alerts.bicep")
    assert resources(doc, "Microsoft.Insights/scheduledQueryRules")
    for rule in doc["variables"]["rules"]["value"]:
        assert "load_text_content" in json.dumps(rule["query"]), rule["name"]
    for path in INFRA.rglob("*.bicep"):
        if path.name != "alerts.bicep":
            parsed = template(str(path.relative_to(INFRA)))
            assert not resources(parsed, "Microsoft.Insights/scheduledQueryRules"), path


def test_every_kql_block_of_the_docs_is_found_and_no_kql_hides_elsewhere() -> None:
    for path in DOCS:
        text = path.read_text()
        opened = len(re.findall(r"^ *```(?:kusto|kql)\s*$", text, re.M))
        assert opened == len([q for q in doc_queries() if q.origin.startswith(relative(path))])
        for fence in fences(path):
            if fence.info in KQL_FENCES:
                continue
            where = f"{relative(path)}:{fence.line} (```{fence.info})"
            assert not (_KQL_START.search(fence.text) and _KQL_PIPE.search(fence.text)), (
                f"{where} holds KQL: give it its own ```kusto block"
            )
            assert "condition-query" not in fence.text, f"{where}: an alert query outside Bicep"
    assert len(doc_queries()) >= len(workbook_queries()) + len(alert_queries())
