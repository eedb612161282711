"""The scheduled log alert rules (infra/modules/alerts.bicep + alerts/*.kql) and their runbooks.

One rule per thing an operator must act on in a DSR's life. Kusto's analyzer checks the queries
(tests/ops/test_kql.py) and tests/ops/test_log_events.py ties their events and fields to the
declared list; here: each rule watches the events it is about, splits by a column its query
returns, fires on a single row, notifies the action group the deployment names or creates, is
deployed by main.bicep on the app's Application Insights component, and has a runbook entry in
docs/operations.md with its query verbatim.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest

from tests.infra.bicep_model import (
    INFRA,
    MODULES,
    ROOT,
    accessor_path,
    body,
    condition,
    module_file,
    module_params,
    only,
    resources,
    template,
)

ALERTS_BICEP = "modules/alerts.bicep"
RULE = "Microsoft.Insights/scheduledQueryRules"
ACTION_GROUP = "Microsoft.Insights/actionGroups"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
#: Rule -> the events its query must watch (the brief's list of what to alert on).
WATCHES = {
    "dsr-overdue": {"deadline_overdue"},
    "dsr-deadline-at-risk": {"deadline_warning"},
    "intake-refused": {"dsr_request_rejected", "dsr_request_poisoned"},
    "configuration-failures": {
        "setup_error",
        "intake_misconfigured",
        "intake_unavailable",
        "graph_error",
    },
    "callbacks-failing": {"callback_failed", "callback_refused"},
    "dsr-stalled": {"dsr_accepted", "export_checked", "dsr_finished", "submit_queued"},
    "submit-backlog-behind": {"submit_gate_behind"},
}
_DURATION = re.compile(r"PT(15M|30M|1H|6H)|P[12]D")


@functools.cache
def doc() -> dict[str, Any]:
    return template(ALERTS_BICEP)


def rules() -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in doc()["variables"]["rules"]["value"]}


def query_file(rule: dict[str, Any]) -> str:
    found = re.findall(r'"file_path": "([^"]+\.kql)"', json.dumps(rule["query"]))
    assert len(found) == 1, rule["name"]
    return str(found[0])


def query_text(name: str) -> str:
    return (MODULES / query_file(rules()[name])).read_text()


def test_there_is_one_rule_per_thing_to_act_on() -> None:
    assert set(rules()) == set(WATCHES)
    for name, events in WATCHES.items():
        text = query_text(name)
        watched = set(re.findall(r'message startswith "(\w+) "', text))
        assert events <= watched, f"{name} does not watch {sorted(events - watched)}"


def test_every_rule_is_a_log_alert_on_the_component_that_fires_on_one_row() -> None:
    resource = only(resources(doc(), RULE))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource["api_version"])
    assert resource["config"]["loop_type"]["detail"]["array_name"] == "rules"
    props = body(resource)["properties"]
    assert body(resource)["kind"] == "LogAlert"
    component = next(iter(resources(doc(), "Microsoft.Insights/components")))
    assert [accessor_path(s) for s in props["scopes"]] == [[component, "id"]]
    assert props["enabled"] == "enabled"
    assert props["autoMitigate"] is True
    assert props["actions"]["actionGroups"] == "notify"
    (criterion,) = props["criteria"]["allOf"]
    assert criterion["timeAggregation"] == "Count"
    assert criterion["operator"] == "GreaterThan"
    assert criterion["threshold"] == 0
    assert criterion["failingPeriods"] == {
        "numberOfEvaluationPeriods": 1,
        "minFailingPeriodsToAlert": 1,
    }
    assert accessor_path(criterion["query"]) == ["rule", "query"]
    # One dimension per name the rule lists (a property loop inside the rules' loop).
    dimensions = criterion["dimensions"]
    assert accessor_path(dimensions["loop_type"]["detail"]["array_name"]) == ["rule", "dimensions"]
    item = dimensions["loop_type"]["detail"]["item_name"]
    assert dimensions["config"] == {"name": item, "operator": "Include", "values": ["*"]}
    # Names are unique per component and deterministic: a re-deployment updates the rules.
    assert "${rule.name}" in body(resource)["name"]
    assert "uniqueString" in body(resource)["name"]


@pytest.mark.parametrize("name", sorted(WATCHES))
def test_each_rule_splits_by_a_column_its_query_returns(name: str) -> None:
    rule = rules()[name]
    assert 0 <= rule["severity"] <= 4
    assert _DURATION.fullmatch(rule["frequency"])
    assert _DURATION.fullmatch(rule["window"])
    text = query_text(name)
    last = text.strip().splitlines()
    tail = "\n".join(last[-3:])
    for column in rule["dimensions"]:
        assert re.search(rf"\b(by|project) (.*, )?{column}\b", tail), f"{name}: no {column} column"
    assert f"docs/operations.md#alert-{name}" in rule["description"]
    # A rule about one event per DSR reads a window as long as it runs: no line is missed.
    if not rule["timeRange"]:
        assert rule["frequency"] == rule["window"], name


#: Rules about lines that belong to no tenant (queue messages that never became a DSR).
NO_TENANT = {"intake-refused"}


@pytest.mark.parametrize("name", sorted(WATCHES))
def test_each_rule_about_dsrs_splits_by_tenant(name: str) -> None:
    """TENANCY=multi: one tenant's trouble raises its own alert, and a request id (unique per
    tenant only) is told apart by its tenant. A line without a tenant_id is the app's own
    tenant's: home, the submit gate's name for it."""
    dimensions = rules()[name]["dimensions"]
    text = query_text(name)
    if name in NO_TENANT:
        assert "TenantId" not in dimensions
        assert "tenant" not in text.lower().replace("tenant's", "")
        return
    assert dimensions[0] == "TenantId", name
    if "RequestId" in dimensions:
        assert dimensions == ["TenantId", "RequestId"], name
    if name == "submit-backlog-behind":  # the gate names its tenant `tenant` (or home)
        assert "by TenantId = tenant" in text
    else:
        assert "tenant_id: string" in text, name
        assert 'TenantId = coalesce(tenant_id, "home")' in text, name
        assert " by request_id" not in text, name


def test_the_stalled_rule_takes_its_threshold_from_a_parameter() -> None:
    params = doc()["parameters"]
    stalled = params["stalledAfterHours"]
    assert stalled["default"] == 6
    bounds = {d["type"]: d.get("argument") for d in stalled["decorators"]}
    assert bounds["min_value"] == 2
    assert bounds["max_value"] == 36
    rule = rules()["dsr-stalled"]
    replace = rule["query"]["function"]
    assert replace["type"] == "replace"
    default = doc()["variables"][replace["parameters"]["old_string"]]["value"]
    text = query_text("dsr-stalled")
    assert text.count(default) == 1
    assert default == "let stalledAfter = 6h;"
    assert replace["parameters"]["new_string"] == "let stalledAfter = ${stalledAfterHours}h;"
    # It reads two days back, more than the longest threshold the parameter allows (36 h).
    assert rule["timeRange"] == "P2D"
    assert "ago(2d)" in text
    props = body(only(resources(doc(), RULE)))["properties"]
    assert "overrideQueryTimeRange" in props


def test_the_action_group_is_the_given_one_or_one_created_for_the_email() -> None:
    group = only(resources(doc(), ACTION_GROUP))
    assert condition(group) == "createActionGroup"
    props = body(group)["properties"]
    (receiver,) = props["emailReceivers"]
    assert receiver["emailAddress"] == "alertEmailAddress"
    assert receiver["useCommonAlertSchema"] is True
    assert body(group)["location"] == "global"
    params = doc()["parameters"]
    assert params["actionGroupId"]["default"] == ""
    assert params["alertEmailAddress"]["default"] == ""
    # No address of anyone is written in the repository.
    assert not re.search(r"\w@[A-Za-z][\w-]*\.[A-Za-z]{2,}", (INFRA / ALERTS_BICEP).read_text())
    notify = json.dumps(doc()["variables"]["notify"]["value"])
    assert "actionGroupId" in notify
    assert "createActionGroup" in notify


def test_main_deploys_the_alerts_on_the_app_insights_component() -> None:
    main = template("main.bicep")
    symbol = only({s: s for s in main["modules"] if module_file(main, s) == ALERTS_BICEP})
    assert body(main["modules"][symbol])["scope"] == "rg"
    params = module_params(main, symbol)
    assert accessor_path(params["applicationInsightsName"]) == [
        "monitoring",
        "outputs",
        "applicationInsightsName",
    ]
    assert params["actionGroupId"] == "alertActionGroupId"
    assert params["alertEmailAddress"] == "alertEmailAddress"
    assert params["stalledAfterHours"] == "alertStalledAfterHours"
    assert main["parameters"]["alertEmailAddress"]["default"] == ""


# ---------------------------------------------------------------------------------------------
# Runbooks


@functools.cache
def operations_doc() -> str:
    return OPERATIONS_DOC.read_text()


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@pytest.mark.parametrize("name", sorted(WATCHES))
def test_each_rule_has_a_runbook_with_its_query(name: str) -> None:
    text = operations_doc()
    heading = f"Alert: {name}"
    assert f"\n### {heading}\n" in text, f"docs/operations.md has no section {heading!r}"
    assert _anchor(heading) == f"alert-{name}"
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    assert "**Means.**" in section, name
    assert "**Do.**" in section, name
    assert f"```kusto\n{query_text(name).rstrip()}\n```" in section, f"{name}: query not verbatim"
    assert f"(#alert-{name})" in text, f"the rules table does not link {name}"
