"""``GET /api/gate`` and ``/api/gate/{tenantId}``: the operator's view of a tenant's submit gate.

Read through the task hub's entity-state read (the fake's, here; the offline engine's RPC in
tests/devhost), answered with counts and times only, in the documented schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from dsr_export.domain import gate
from intake import http_api
from tests.unit.intake_fakes import (
    T0,
    FakeDurableClient,
    app_settings,
    body,
    call,
    intake_settings,
    request,
)

TENANT = "2f7b3c1e-8d4a-4b6f-9e2d-1a3c5b7d9f0e"
SPEC: dict[str, Any] = json.loads(http_api.OPENAPI_PATH.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with intake_settings():
        yield


def _valid(document: Any) -> None:
    root = {"$ref": "#/components/schemas/GateView", "components": SPEC["components"]}
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        document
    )


def _busy_gate() -> gate.GateState:
    """A full window (1,000 let through over the last day), two DSRs waiting, three polling."""
    state = gate.GateState()
    for n in range(1000):
        at = (T0 - timedelta(hours=23) + timedelta(seconds=n)).isoformat()
        state, _ = gate.ask(state, gate.Ask(f"S{n}", None, None, at, subject=f"u{n}"))
        state = gate.report(state, gate.SubmitReport(f"S{n}", gate.SubmitVerdict.ACCEPTED, at))
    for rid, days in (("LATE", 20), ("SOON", 2)):
        due = (T0 + timedelta(days=days)).isoformat()
        state, answer = gate.ask(state, gate.Ask(rid, due, T0.isoformat(), T0.isoformat()))
        assert not answer.granted
    for rid in ("S0", "S1", "S2"):  # polling; the others' DSRs never checked in (lapsed)
        state, _ = gate.pace(state, gate.PaceAsk(rid, T0.isoformat()))
    return state


def test_the_gate_shows_its_queue_slot_window_and_in_flight_without_ids(user_function):
    client = FakeDurableClient()
    client.entities[(gate.ENTITY_NAME, gate.HOME_TENANT)] = _busy_gate().to_dict()
    answer = call(user_function("get_gate"), client, req=request("GET", "gate"))
    assert answer.status_code == 200, answer.get_body()
    view = body(answer)
    _valid(view)
    assert (view["tenant"], view["queued"], view["submitsInWindow"]) == ("home", 2, 1000)
    assert view["exportsInFlight"] == 3
    assert view["earliestDeadline"] == gate._iso(T0 + timedelta(days=2)), "the head, by deadline"
    assert view["nextSlotAt"] == gate._iso(
        T0 - timedelta(hours=23) + timedelta(days=1, seconds=gate.SLOT_MARGIN_SECONDS)
    )
    text = json.dumps(view)
    assert "SOON" not in text, "no request id"
    assert "LATE" not in text
    assert "u0" not in text, "no subject"


def test_a_tenant_whose_gate_never_ran_has_an_empty_one(user_function):
    req = request("GET", f"gate/{TENANT.upper()}", route_params={"tenantId": TENANT.upper()})
    answer = call(user_function("get_tenant_gate"), FakeDurableClient(), req=req)
    assert answer.status_code == 200
    view = body(answer)
    _valid(view)
    assert (view["tenant"], view["queued"], view["nextSlotAt"]) == (TENANT, 0, None)


def test_a_tenant_id_that_is_not_one_is_refused(user_function):
    req = request("GET", "gate/contoso", route_params={"tenantId": "contoso"})
    answer = call(user_function("get_tenant_gate"), FakeDurableClient(), req=req)
    assert answer.status_code == 400
    assert body(answer)["errors"][0]["pointer"] == "/tenantId"


def test_reading_the_gate_needs_the_read_role(user_function):
    with app_settings(AUTH_FUNCTION_KEY_ROLES="DSR.Submit"):
        answer = call(user_function("get_gate"), FakeDurableClient(), req=request("GET", "gate"))
    assert answer.status_code == 403


# -- dsrctl gate ---------------------------------------------------------------------------------
def test_dsrctl_gate_prints_the_view_of_the_named_tenant(httpserver):
    from click.testing import CliRunner

    from dsrctl.commands import cli

    example = SPEC["paths"]["/gate/{tenantId}"]["get"]["responses"]["200"]["content"]
    view = example["application/json"]["example"]
    httpserver.expect_request(f"/api/gate/{TENANT}", method="GET").respond_with_json(view)
    base = ["--url", httpserver.url_for("/"), "--function-key", "k"]
    result = CliRunner().invoke(cli, [*base, "gate", TENANT], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "queued" in result.output
    assert "1000 of 1000 in the last 24 h" in result.output
    assert "2026-03-05 09:00" in result.output, "the earliest deadline, as a time"
    as_json = CliRunner().invoke(cli, [*base, "--json", "gate", TENANT])
    assert json.loads(as_json.output) == view


def test_dsrctl_gate_counts_against_the_tenants_budget_when_it_is_lower():
    """A tenant with a ``quotaBudget`` of 300 a day is full at 300: "300 of 1000" would tell
    the operator there was room."""
    from dsrctl.gate_command import gate_pairs

    view = {"submitsInWindow": 300, "submitQuota": 1000, "submitBudget": 300, "windowHours": 24}
    pairs = dict(gate_pairs(view))
    assert pairs["submits used"] == "300 of 300 in the last 24 h"
    assert pairs["tenant's budget"] == "300 of Graph's 1000 a day"
    assert "submitBudget" not in pairs
    unbudgeted = dict(gate_pairs({**view, "submitBudget": None}))
    assert unbudgeted["submits used"] == "300 of 1000 in the last 24 h"
    assert "tenant's budget" not in unbudgeted
