"""The operators' workbook (infra/modules/workbook.bicep + workbook.json) and docs/operations.md.

The workbook's panels are KQL over Application Insights ``traces``, reading the app's log lines
(``event key=value key="quoted value" ...``, written by :func:`dsr_export.domain.logs.log_event`)
with ``parse-kv``. Kusto's own analyzer checks the syntax and the columns (tests/ops/test_kql.py);
what can still drift silently is checked here:

- every event name a query mentions is a declared event (dsr_export/domain/log_events.py), and
  the code logs it (found by reading the source), so a renamed or removed event fails here
  instead of leaving an empty panel in the portal;
- every key a query parses is a field of the events it reads, and comes out of lines made by the
  real ``log_event`` as the panel expects (tests/ops/logfmt.py reads them as ``parse-kv`` does);
- the workbook is a valid ``Notebook/1.0`` document bound to the time-range parameter, deployed
  by main.bicep as a shared workbook of the app's Application Insights component;
- docs/operations.md carries the same queries verbatim and explains every event.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from dsr_export.domain import steps
from dsr_export.domain.log_events import EVENTS
from dsr_export.domain.logs import format_line, log_event
from dsr_export.domain.status import Phase
from orchestrations.submit_gate import HOME_TENANT
from tests.infra.bicep_model import (
    INFRA,
    MODULES,
    ROLE_ASSIGNMENT,
    ROOT,
    accessor_path,
    body,
    module_file,
    module_params,
    only,
    resources,
    template,
)
from tests.ops.log_calls import calls
from tests.ops.logfmt import event_of, parse_kv

WORKBOOK_BICEP = "modules/workbook.bicep"
WORKBOOK_JSON = MODULES / "workbook.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
#: Where log lines are written; everything the Functions host runs of ours.
#: What operators must be able to see, per the operations brief (each needs a panel).
WATCHED_EVENTS = {
    "dsr_accepted",
    "container_prepared",
    "export_submitted",
    "export_checked",
    "export_finalized",
    "graph_error",
    "setup_error",
    "deadline_warning",
    "deadline_overdue",
    "callback_attempt_failed",
    "callback_refused",
    "callback_failed",
    "dsr_request_rejected",
    "dsr_request_poisoned",
    "sas_lifetime_limited",
    "dsr_finished",
    "dsr_retried",
    "dsr_extended",
    "deadline_extended",
    "dsr_delivered",
    "retention_run",
    "retention_deleted",
    "dsr_erased",
    "history_purged",
    "retention_failed",
    "evidence_recorded",
}
#: The tenant filter (the workbook parameter ``Tenant``): the first line of every DSR panel ...
TENANT_LET = 'let tenant_filter = "{Tenant}"; // the Tenant filter: all, home or a tenant id\n'
#: ... and its test, right after the panel reads ``tenant_id``. The workbook replaces
#: ``{Tenant}`` in the let line with the choice; ``strcat("{", "Tenant}")`` is not replaced, so
#: pasted into Logs as it is (``{Tenant}`` left a literal) the query keeps every tenant.
TENANT_SENTINEL = 'strcat("{", "Tenant}")'
TENANT_TEST = f'| where tenant_filter in ("all", {TENANT_SENTINEL}) or Tenant == tenant_filter\n'
#: The tenant filter's own values: every tenant, and the app's own (the submit gate's name for
#: it, which a line without a tenant_id belongs to).
TENANT_WORDS = {"all", HOME_TENANT}
#: Panels over lines that belong to no DSR, so to no tenant: the whole deployment's.
DEPLOYMENT_PANELS = {"retention-runs", "setup-errors", "queue-intake"}
#: ``parse-kv message as (key: type, ...)``: the keys a query reads.
_PARSE_KV = re.compile(r"parse-kv message as \(([^)]*)\)")
#: KQL string literals: verbatim (@"...") or plain ("..." with backslash escapes).
_KQL_LITERAL = re.compile(
    r'@"(?P<verbatim>[^"]*)"|"(?P<plain>(?:[^"\\]|\\.)*)"'
    r"|@'(?P<single_verbatim>[^']*)'|'(?P<single>(?:[^'\\]|\\.)*)'"
)


# ---------------------------------------------------------------------------------------------
# What the code logs


def logged() -> tuple[frozenset[str], frozenset[str]]:
    """(event names, field names) of every structured log line in the source."""
    found = calls()
    return (
        frozenset(event for call in found for event in call.events),
        frozenset(field for call in found for field in call.fields),
    )


def test_the_source_scan_finds_the_events_and_fields() -> None:
    """Guard the scanner itself: an empty or partial scan would make the checks below vacuous."""
    events, fields = logged()
    assert events >= WATCHED_EVENTS | {
        "user_resolved",
        "callback_sent",
        "dsr_cancel_requested",
    }
    # Logged through the orchestrator's _log wrapper, not log_event directly.
    assert {"deadline_warning", "deadline_overdue", "callback_failed"} <= events
    assert {"request_id", "step", "status", "code", "graph_request_id", "client_request_id"} <= (
        fields
    )
    # Added by the wrapper to every orchestrator line.
    assert {"instance_id", "deadline"} <= fields


# ---------------------------------------------------------------------------------------------
# The workbook document


@functools.cache
def workbook() -> dict[str, Any]:
    return dict(json.loads(WORKBOOK_JSON.read_text()))


def query_items() -> dict[str, dict[str, Any]]:
    return {item["name"]: item["content"] for item in workbook()["items"] if item["type"] == 3}


def queries() -> dict[str, str]:
    return {name: content["query"] for name, content in query_items().items()}


def kql_literals(query: str) -> list[tuple[str, bool]]:
    """(text, verbatim) of every string literal in a KQL query."""
    found = []
    for match in _KQL_LITERAL.finditer(query):
        if match.group("verbatim") is not None:
            found.append((match.group("verbatim"), True))
        elif match.group("plain") is None:
            # Single-quoted ('"' in parse-kv's options): no event name is written that way.
            found.append((match.group("single_verbatim") or match.group("single") or "", True))
        else:
            found.append((match.group("plain"), False))
    return found


def test_workbook_is_a_notebook_document() -> None:
    doc = workbook()
    assert doc["version"] == "Notebook/1.0"
    assert doc["$schema"].endswith("/schema/workbook.json")
    names = [item["name"] for item in doc["items"]]
    assert len(names) == len(set(names)), "step names must be unique"
    assert {item["type"] for item in doc["items"]} <= {1, 3, 9}  # text, query, parameters
    assert len(query_items()) >= 10


def test_workbook_has_a_time_range_parameter_every_query_uses() -> None:
    parameters = [
        p
        for item in workbook()["items"]
        if item["type"] == 9
        for p in item["content"]["parameters"]
    ]
    time_range = only({p["name"]: p for p in parameters if p["type"] == 4})
    assert time_range["name"] == "TimeRange"
    assert time_range["isRequired"] is True
    assert time_range["value"]["durationMs"] > 0
    choices = {v["durationMs"] for v in time_range["typeSettings"]["selectableValues"]}
    assert time_range["value"]["durationMs"] in choices
    ids = [p["id"] for p in parameters]
    assert len(ids) == len(set(ids))
    for name, content in query_items().items():
        assert content["version"] == "KqlItem/1.0", name
        assert content["timeContextFromParameter"] == "TimeRange", name
        # Logs (0) of an Application Insights component: the `traces` table, not a workspace's
        # AppTraces.
        assert content["queryType"] == 0, name
        assert content["resourceType"] == "microsoft.insights/components", name
        assert content["title"], name


def test_queries_read_traces_and_paste_into_logs_as_they_are() -> None:
    for name, query in queries().items():
        assert re.search(r"^traces$", query, re.M) or re.search(r"=\s*traces\b", query), name
        # No workbook parameter but the tenant filter's ({TimeRange} etc.): the time range comes
        # from the item, so the text is valid KQL on its own and docs/operations.md can give it
        # verbatim. The filter is written so that, pasted as it is, it keeps every tenant.
        rest = query.replace(TENANT_LET, "").replace(TENANT_SENTINEL, "")
        assert "{" not in rest, f"{name} uses a workbook parameter"
        assert query.count("(") == query.count(")"), name


def test_queries_name_only_events_the_code_logs() -> None:
    """A renamed event leaves its old name here, matching nothing: fail instead.

    Every lower-case identifier-like string literal in a query must be a declared event, a DSR
    phase (the in-flight panel labels DSRs with them) or a value of the tenant filter; labels of
    our own are written with capitals or spaces so they cannot be mistaken for either. The code
    must log each event.
    """
    events, _ = logged()
    assert events >= set(EVENTS)
    phases = {p.value for p in Phase} | TENANT_WORDS
    for name, query in queries().items():
        for text, verbatim in kql_literals(query):
            word = text.strip()
            if verbatim or not re.fullmatch(r"[a-z][a-z0-9_]*", word):
                continue
            assert word in set(EVENTS) | phases, (
                f"{name}: {word!r} is neither a declared event, a phase nor a tenant word"
            )
            if text != word:  # `message startswith "event "`: the space ends the event name
                assert text == f"{word} ", f"{name}: {text!r}"
                assert word in EVENTS, f"{name}: {text!r} is not a declared event"


def parsed_keys(query: str) -> list[str]:
    return [
        item.split(":")[0].strip().strip("[]'")
        for listing in _PARSE_KV.findall(query)
        for item in listing.split(",")
    ]


def test_queries_parse_only_fields_the_code_logs() -> None:
    _, fields = logged()
    declared = {f for event in EVENTS.values() for f in event.fields}
    for name, query in queries().items():
        keys = set(parsed_keys(query))
        assert keys, f"{name} parses no field"
        assert keys <= declared, f"{name} parses undeclared fields: {sorted(keys - declared)}"
        assert "extract(" not in query, f"{name}: read fields with parse-kv, not regexes"
    every = {k for query in queries().values() for k in parsed_keys(query)}
    assert every <= fields


def test_every_watched_event_has_a_panel() -> None:
    mentioned = {
        text.strip()
        for query in queries().values()
        for text, verbatim in kql_literals(query)
        if not verbatim
    }
    missing = WATCHED_EVENTS - mentioned
    assert not missing, f"no workbook panel shows {sorted(missing)}"
    graph = parsed_keys(queries()["graph-errors"])
    for field in ("step", "status", "code", "graph_request_id", "client_request_id"):
        assert field in graph
    assert "| where status == 429" in queries()["throttling"]


# ---------------------------------------------------------------------------------------------
# The tenant filter (TENANCY=multi: one deployment, many tenants)


def _parameter(name: str) -> dict[str, Any]:
    parameters = [
        p
        for item in workbook()["items"]
        if item["type"] == 9
        for p in item["content"]["parameters"]
    ]
    return dict(only({p["name"]: p for p in parameters if p["name"] == name}))


def _request_scoped_only(query: str) -> bool:
    named = {text.strip() for text, verbatim in kql_literals(query) if not verbatim}
    events = named & set(EVENTS)
    return bool(events) and all(EVENTS[event].request_scoped for event in events)


def test_the_tenant_parameter_offers_every_tenant_seen_and_defaults_to_all() -> None:
    tenant = _parameter("Tenant")
    assert tenant["type"] == 2  # a drop-down
    assert tenant["isRequired"] is True
    assert tenant["value"] == "all"
    assert tenant["timeContextFromParameter"] == "TimeRange"
    assert (tenant["queryType"], tenant["resourceType"]) == (0, "microsoft.insights/components")
    query = tenant["query"]
    # Its choices: all (selected), home, and every tenant id a line carries (tenant_id; the
    # submit gate's lines name theirs as tenant).
    assert 'print value = "all", label = "All tenants", selected = true' in query
    assert 'print value = "home"' in query
    assert set(parsed_keys(query)) == {"tenant_id", "tenant"}
    assert "{" not in query


def test_every_dsr_panel_filters_by_tenant_and_deployment_panels_do_not() -> None:
    filtered = {name for name, query in queries().items() if TENANT_LET in query}
    dsr_panels = {name for name, query in queries().items() if _request_scoped_only(query)}
    assert filtered == dsr_panels
    assert set(queries()) - filtered == DEPLOYMENT_PANELS
    for name in filtered:
        query = queries()[name]
        assert query.startswith(TENANT_LET), name
        # The workbook substitutes {Tenant} once, in the let line; nowhere else.
        assert query.count("{Tenant}") == 1, name
        if name == "submit-gate":  # the gate's lines name their tenant `tenant` (or home)
            assert TENANT_TEST.replace("Tenant ==", "tenant ==") in query
            continue
        assert TENANT_TEST in query, name
        assert '| extend Tenant = coalesce(tenant_id, "home")\n' + TENANT_TEST in query, name
        assert "tenant_id" in parsed_keys(query), name
        # Request ids are unique per tenant only (two tenants may both send RITM0012345): a
        # DSR is (Tenant, request_id) wherever DSRs are told apart.
        assert " by request_id" not in query, name
        assert "dcount(request_id)" not in query, name
        assert "!in (" not in query, name
        if "RequestId = request_id" in query:
            assert "Tenant, RequestId = request_id" in query, name


def _tenant_choice(query: str, choice: str | None) -> str:
    """What the tenant filter compares: the workbook's substitution of ``choice``, or the text
    as it is (None: pasted into Logs)."""
    text = query if choice is None else query.replace("{Tenant}", choice)
    (value,) = re.findall(r'^let tenant_filter = "([^"]*)";', text, re.M)
    return str(value)


@pytest.mark.parametrize(
    ("choice", "keeps"),
    [
        (
            "all",
            {
                "home",
                "0b5c4a7e-1111-4222-8333-444455556666",
                "1c6d5b8f-7777-4888-9999-000011112222",
            },
        ),
        ("home", {"home"}),
        ("0b5c4a7e-1111-4222-8333-444455556666", {"0b5c4a7e-1111-4222-8333-444455556666"}),
        (
            None,
            {
                "home",
                "0b5c4a7e-1111-4222-8333-444455556666",
                "1c6d5b8f-7777-4888-9999-000011112222",
            },
        ),
    ],
)
def test_the_tenant_filter_keeps_the_chosen_tenant(choice: str | None, keeps: set[str]) -> None:
    """The filter's test, evaluated as Kusto would: ``tenant_filter in ("all", "{Tenant}")``
    (strcat's value) keeps everything, else ``Tenant == tenant_filter``."""
    sentinel = "{" + "Tenant}"
    lines = {"home", "0b5c4a7e-1111-4222-8333-444455556666", "1c6d5b8f-7777-4888-9999-000011112222"}
    filtered = {name: query for name, query in queries().items() if TENANT_LET in query}
    assert len(filtered) >= 10
    for name, query in filtered.items():
        value = _tenant_choice(query, choice)
        kept = {tenant for tenant in lines if value in ("all", sentinel) or tenant == value}
        assert kept == keeps, name


def test_the_tenant_comes_out_of_a_real_line() -> None:
    """``tenant_id`` as a line carries it (format_line is what log_event writes); a line
    without one is the app's own tenant's (home)."""
    line = format_line(
        "dsr_finished",
        {"request_id": "RITM0012345", "tenant_id": "0b5c4a7e-1111-4222-8333-444455556666"},
    )
    query = queries()["outcomes-per-day"]
    assert _read(query, line)["tenant_id"] == "0b5c4a7e-1111-4222-8333-444455556666"
    assert _read(query, format_line("dsr_finished", {"request_id": "R-1"}))["tenant_id"] == ""
    gate = _line(
        "submit_slot_granted",
        request_id="R-2",
        tenant="home",
        queued=0,
        in_window=1,
        next_slot_at="2026-12-08T00:00:00+00:00",
    )
    assert _read(queries()["submit-gate"], gate)["tenant"] == "home"


# ---------------------------------------------------------------------------------------------
# The patterns against real log lines


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _line(event: str, **fields: object) -> str:
    """The message ``log_event`` writes for ``event`` with ``fields``."""
    capture = _Capture()
    logger = logging.getLogger("tests.infra.workbook")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        log_event(event, level=logging.INFO, logger=logger, **fields)
    finally:
        logger.removeHandler(capture)
    assert len(capture.lines) == 1
    return capture.lines[0]


def _read(query: str, line: str) -> dict[str, str]:
    """What the query's ``parse-kv`` keys read out of ``line`` (empty when absent)."""
    pairs = parse_kv(line)
    return {key: pairs.get(key, "") for key in parsed_keys(query)}


def test_graph_error_fields_come_out_of_a_real_line() -> None:
    line = _line(
        "graph_error",
        request_id="RITM0012345",
        step=steps.SUBMIT_EXPORT.name,
        status=429,
        code="TooManyRequests",
        graph_request_id="5b0c7e4a-0000-4000-8000-000000000001",
        client_request_id="9d1e2f3a-0000-4000-8000-000000000002",
    )
    assert _read(queries()["graph-errors"], line) == {
        "tenant_id": "",
        "request_id": "RITM0012345",
        "step": steps.SUBMIT_EXPORT.name,
        "status": "429",
        "code": "TooManyRequests",
        "graph_request_id": "5b0c7e4a-0000-4000-8000-000000000001",
        "client_request_id": "9d1e2f3a-0000-4000-8000-000000000002",
    }
    # `status` is not read out of `graph_status`, nor `request_id` out of the other ids.
    checked = _line("export_checked", request_id="R-1", phase="exporting", graph_status="running")
    assert _read(queries()["graph-errors"], checked)["status"] == ""
    assert _read(queries()["in-flight-list"], checked)["graph_status"] == "running"


def test_event_name_and_free_text_reasons_come_out_of_real_lines() -> None:
    intake = queries()["queue-intake"]
    rejected = _line(
        "dsr_request_rejected",
        message_id="m-1",
        request_id=None,
        reason="invalid",
        fields="/user,/requestId",
        recorded_in="dsr-requests-rejected",
    )
    assert event_of(rejected) == "dsr_request_rejected"
    got = _read(intake, rejected)
    assert got["reason"] == "invalid"
    assert got["fields"] == "/user,/requestId"
    assert got["request_id"] == ""  # None is left out of the line
    poisoned = _line(
        "dsr_request_poisoned",
        request_id="RITM7",
        message_id="m-2",
        dequeue_count=5,
        queue="dsr-requests-poison",
        reason='ServiceRequestError: task hub unreachable (timeout=30 s, "retry")',
    )
    got = _read(intake, poisoned)
    assert got["reason"] == 'ServiceRequestError: task hub unreachable (timeout=30 s, "retry")'
    assert got["queue"] == "dsr-requests-poison"
    assert got["request_id"] == "RITM7"
    attempt = _line(
        "callback_attempt_failed",
        request_id="R-2",
        event_type="dsr.completed",
        message_id="msg_1",
        reason="receiver answered 503",
    )
    got = _read(queries()["callbacks"], attempt)
    assert got["event_type"] == "dsr.completed"
    assert got["reason"] == "receiver answered 503"


def test_deadline_and_sas_times_come_out_of_real_lines() -> None:
    line = _line(
        "deadline_overdue",
        request_id="R-3",
        instance_id="R-3",
        deadline="2026-12-01T09:30:00+01:00",
    )
    assert _read(queries()["deadlines"], line)["deadline"] == "2026-12-01T09:30:00+01:00"
    line = _line(
        "sas_lifetime_limited",
        request_id="R-4",
        phase="submitting",
        sas_expires_at="2026-12-05T10:00:00+00:00",
        consequence="an export still running after this time fails",
    )
    assert _read(queries()["sas-lifetime"], line)["sas_expires_at"] == "2026-12-05T10:00:00+00:00"


def test_lifecycle_fields_come_out_of_real_lines() -> None:
    asked = _line(
        "dsr_extended",
        request_id="R-5",
        ask_id="ask_5",
        previous_deadline="2026-12-01T00:00:00+00:00",
        extension_days=62,
        reason_code="complexity",
        caller_kind="user",
        caller_id="4f0c",
    )
    got = _read(queries()["extensions"], asked)
    assert (got["ask_id"], got["extension_days"]) == ("ask_5", "62")
    assert got["reason_code"] == "complexity"
    applied = _line(
        "deadline_extended",
        request_id="R-5",
        instance_id="R-5",
        deadline="2027-02-01T00:00:00+00:00",
        ask_id="ask_5",
        previous_deadline="2026-12-01T00:00:00+00:00",
        extension_days=62,
    )
    outcome = _read(queries()["extensions"], applied)
    assert (outcome["ask_id"], outcome["deadline"]) == ("ask_5", "2027-02-01T00:00:00+00:00")
    run = _line(
        "retention_run",
        due=4,
        deleted=2,
        purged=2,
        failed=1,
        skipped=1,
        poison_cleared=5,
        rejected_cleared=7,
    )
    assert _read(queries()["retention-runs"], run) == {
        "due": "4",
        "deleted": "2",
        "purged": "2",
        "failed": "1",
        "skipped": "1",
        "poison_cleared": "5",
        "rejected_cleared": "7",
    }
    retried = _line(
        "dsr_retried",
        request_id="R-6",
        attempt=2,
        previous_phase="failed",
        previous_code="Forbidden",
        caller_kind="app",
        caller_id="a1",
    )
    assert _read(queries()["retries"], retried)["previous_code"] == "Forbidden"
    finished = _line(
        "dsr_finished", request_id="R-6", instance_id="R-6", phase="failed", code="Forbidden"
    )
    assert _read(queries()["failures-by-code"], finished) == {
        "tenant_id": "",
        "request_id": "R-6",
        "phase": "failed",
        "code": "Forbidden",
    }
    assert '"Forbidden"' in queries()["failures-by-code"]  # it has a fix


# ---------------------------------------------------------------------------------------------
# The Bicep module and its wiring


def test_workbook_module_is_a_shared_workbook_of_the_app_insights_component() -> None:
    doc = template(WORKBOOK_BICEP)
    component_symbol, component = only(
        {k: (k, v) for k, v in resources(doc, "Microsoft.Insights/components").items()}
    )
    assert component["existing"] is True
    assert body(component)["name"] == "applicationInsightsName"
    resource = only(resources(doc, "Microsoft.Insights/workbooks"))
    version = resource["api_version"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version), f"preview or odd API version {version}"
    config = body(resource)
    assert config["kind"] == "shared"
    props = config["properties"]
    assert props["category"] == "workbook"
    assert props["version"] == workbook()["version"]
    assert accessor_path(props["sourceId"]) == [component_symbol, "id"]
    # A deterministic GUID name: a re-deployment updates the workbook, never adds a copy.
    name = config["name"]["function"]
    assert name["type"] == "guid"
    assert accessor_path(name["parameters"]["base_string"]) == [component_symbol, "id"]
    assert not resources(doc, ROLE_ASSIGNMENT), "the workbook needs no role of its own"


def test_workbook_content_is_loaded_from_workbook_json() -> None:
    doc = template(WORKBOOK_BICEP)
    component_symbol = next(iter(resources(doc, "Microsoft.Insights/components")))
    props = body(only(resources(doc, "Microsoft.Insights/workbooks")))["properties"]
    replace = props["serializedData"]["function"]
    assert replace["type"] == "replace"
    args = replace["parameters"]
    load = args["original_string"]["function"]
    assert load["type"] == "load_text_content"
    assert (INFRA / Path(WORKBOOK_BICEP).parent / load["parameters"]["file_path"]) == WORKBOOK_JSON
    # The placeholder for the component's id is the one workbook.json uses, and it is replaced
    # with that id; the file itself names no subscription.
    placeholder = doc["variables"][args["old_string"]]["value"]
    assert workbook()["fallbackResourceIds"] == [placeholder]
    assert WORKBOOK_JSON.read_text().count(placeholder) == 1
    assert accessor_path(args["new_string"]) == [component_symbol, "id"]
    assert "/subscriptions/" not in WORKBOOK_JSON.read_text()


def test_main_deploys_the_workbook_on_the_app_insights_component() -> None:
    main = template("main.bicep")
    symbol = only({s: s for s in main["modules"] if module_file(main, s) == WORKBOOK_BICEP})
    assert body(main["modules"][symbol])["scope"] == "rg"
    params = module_params(main, symbol)
    assert accessor_path(params["applicationInsightsName"]) == [
        "monitoring",
        "outputs",
        "applicationInsightsName",
    ]
    assert params["location"] == "location"
    # ...and that output is the component's own name, so sourceId is that component's id.
    monitoring = template("modules/monitoring.bicep")
    component_symbol = next(iter(resources(monitoring, "Microsoft.Insights/components")))
    output = monitoring["outputs"]["applicationInsightsName"]["value"]
    assert accessor_path(output) == [component_symbol, "name"]
    assert accessor_path(main["outputs"]["OPERATIONS_WORKBOOK_ID"]["value"]) == [
        symbol,
        "outputs",
        "id",
    ]


# ---------------------------------------------------------------------------------------------
# docs/operations.md


@functools.cache
def operations_doc() -> str:
    return OPERATIONS_DOC.read_text()


@pytest.mark.parametrize("name", sorted(queries()))
def test_operations_doc_gives_each_workbook_query_verbatim(name: str) -> None:
    blocks = re.findall(r"```kusto\n(.*?)\n```", operations_doc(), re.S)
    assert queries()[name] in blocks, f"docs/operations.md lacks the {name} query as it is"


def test_operations_doc_explains_every_logged_event() -> None:
    events, _ = logged()
    missing = {event for event in events | set(EVENTS) if f"`{event}`" not in operations_doc()}
    assert not missing, f"docs/operations.md does not explain {sorted(missing)}"


def test_operations_doc_queries_name_declared_events() -> None:
    """Every ``startswith "<event> "`` in the doc (its own queries too) names a declared event."""
    named = re.findall(r"message startswith [\"']([^\"']*)[\"']", operations_doc())
    assert len(named) > len(queries())
    for text in named:
        assert text.endswith(" "), f"docs/operations.md: {text!r} (the space ends the name)"
        assert text.strip() in EVENTS, f"docs/operations.md: {text!r} is not a declared event"


def test_deploy_doc_links_the_operations_doc() -> None:
    assert "(operations.md)" in (ROOT / "docs" / "deploy.md").read_text()
