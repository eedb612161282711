"""Every DSR belongs to one tenant (issue 21, TENANCY=multi): its id, its intake, its routes.

The intake's and routes' own code runs with the fake task hub and an in-memory registry; the
caller's tenant scope is set on the caller as intake/auth.py sets it from its bindings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dsr_export import composition
from dsr_export.adapters.failures import TenantConsentMissing, setup_error
from dsr_export.domain import dsr_keys
from dsr_export.domain.bindings import Binding, Bound, PrincipalKind
from dsr_export.domain.callers import Caller, Role, TenantScope, from_function_key
from dsr_export.domain.deadlines import parse_regulation
from dsr_export.domain.job import ExportJob
from dsr_export.domain.request import canonical_request_id, validate_request_id
from dsr_export.domain.tenants import QuotaBudget, Registered, Tenant, with_changes
from intake import listing, service, tenancy
from intake.service import Admission, start_or_get
from intake.verdicts import Refused
from tests.unit.intake_fakes import (
    FUNCTION_KEY,
    T0,
    USER_ID,
    FakeDurableClient,
    body,
    call,
    intake_settings,
    request,
    valid_payload,
)

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
UNREGISTERED = "33333333-3333-4333-8333-333333333333"
KEY_A, KEY_B = dsr_keys.tenant_key(A), dsr_keys.tenant_key(B)
#: A function key bound to tenant B alone (by a binding in the registry).
B_KEY = "bound-to-fabrikam"
EVERYWHERE = Caller("application", "operator", frozenset(Role) - {Role.ADMIN})


def bound(*tenants: str) -> Caller:
    return Caller(
        "application", "ticketing", frozenset(Role) - {Role.ADMIN}, scope=TenantScope.only(tenants)
    )


class MemoryRegistry:
    """The registry's reading side, in memory (tests/integration covers the blob store)."""

    def __init__(self, *tenants: Tenant) -> None:
        self.tenants = {t.tenant_id: t for t in tenants}

    def get(self, tenant_id: str) -> Registered | None:
        tenant = self.tenants.get(tenant_id.lower())
        if tenant is None:
            return None
        return Registered(tenant, '"1"', T0.isoformat(), T0.isoformat(), {"kind": "test"})

    def list(self) -> list[Registered]:
        return [r for r in (self.get(t) for t in sorted(self.tenants)) if r is not None]

    @property
    def bindings(self) -> Any:
        """One key bound to tenant B alone; the routes' own function key is an operator (bound
        to every tenant by ``TENANCY_OPERATORS``)."""
        bound = Binding(from_function_key(B_KEY, ()).id, PrincipalKind.FUNCTION_KEY, frozenset({B}))

        class Bindings:
            def all(self) -> list[Bound]:
                return [Bound(bound, T0.isoformat(), T0.isoformat(), {})]

        return Bindings()


@pytest.fixture(autouse=True)
def registry(swap: Callable[..., None]) -> Iterator[MemoryRegistry]:
    registry = MemoryRegistry(
        Tenant(A, "Contoso", evidence_prefix="t-contoso"),
        Tenant(B, "Fabrikam", regulation=parse_regulation("ccpa"), deadline_warning_days=3),
    )
    swap(clock=lambda: T0, tenant_registry=registry)
    with intake_settings(
        TENANCY="multi",
        MULTI_TENANT_CLIENT_ID="00000000-0000-4000-8000-0000000000ac",
        TENANCY_OPERATORS=from_function_key(FUNCTION_KEY, ()).id,
    ):
        composition.reset()
        yield registry
    composition.reset()


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


def submit(client: FakeDurableClient, caller: Caller, payload: dict[str, Any]) -> Any:
    return asyncio.run(start_or_get(client, payload, now=T0, source="http", caller=caller))


def refused(run: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """The status and body a use case's refusal answers with."""
    with pytest.raises(Refused) as caught:
        run()
    answer = caught.value.response()
    return answer.status_code, json.loads(answer.get_body())


# -- the DSR id -----------------------------------------------------------------------------------
def test_the_tenant_key_is_short_stable_and_upper_case_hex() -> None:
    assert re.fullmatch(r"[0-9A-F]{12}", KEY_A)
    assert dsr_keys.tenant_key(A.upper()) == KEY_A, "tenant ids compare in lower case"
    assert KEY_A != KEY_B


def test_a_dsr_id_is_its_own_canonical_form_and_a_valid_instance_id() -> None:
    pair = dsr_keys.dsr_id(A, "ritm0012345")
    assert pair == f"{KEY_A}:RITM0012345"
    assert canonical_request_id(pair) == pair
    assert validate_request_id(pair) == pair, "in the instance ids' safe alphabet"
    assert dsr_keys.split(pair.lower()) == dsr_keys.DsrId(KEY_A, "RITM0012345")
    assert dsr_keys.belongs_to(pair, A)
    assert not dsr_keys.belongs_to(pair, B)
    assert dsr_keys.dsr_id(None, "ritm1") == "RITM1", "single: the canonical request id"
    assert dsr_keys.split("RITM1") is None


def test_an_input_written_before_tenants_reads_back_as_the_apps_own_tenant() -> None:
    old = {"requestId": "RITM1", "user": USER_ID, "policy": {"timeoutDays": 45}}
    assert ExportJob.from_input(old).tenant_id is None
    job = ExportJob(request_id=f"{KEY_A}:RITM1", user=USER_ID, tenant_id=A)
    assert ExportJob.from_input(job.to_input()).tenant_id == A
    assert job.next_attempt({"phase": "failed"}).tenant_id == A, "a retry stays in its tenant"


# -- the intake ------------------------------------------------------------------------------------
def test_two_tenants_may_send_the_same_request_id(client: FakeDurableClient) -> None:
    first = submit(client, EVERYWHERE, valid_payload("RITM0012345", tenantId=A))
    second = submit(client, EVERYWHERE, valid_payload("ritm0012345", tenantId=B.upper()))
    assert (first.verdict, second.verdict) == (Admission.STARTED, Admission.STARTED)
    assert [instance for _, instance, _ in client.started] == [
        f"{KEY_A}:RITM0012345",
        f"{KEY_B}:RITM0012345",
    ]
    inputs = [job for _, _, job in client.started]
    assert [job["tenantId"] for job in inputs] == [A, B]
    assert first.document.to_wire()["tenantId"] == A
    again = submit(client, EVERYWHERE, valid_payload("RITM0012345", tenantId=A))
    assert again.verdict is Admission.EXISTING, "idempotent per tenant"
    assert len(client.started) == 2


def test_a_dsr_carries_its_tenants_quota_budget_as_registered_at_intake(
    client: FakeDurableClient, registry: MemoryRegistry
) -> None:
    registry.tenants[B] = with_changes(
        registry.tenants[B], quota_budget=QuotaBudget(submits_per_day=3, polls_per_hour=2000)
    )
    submit(client, EVERYWHERE, valid_payload("RITM1", tenantId=A))
    submit(client, EVERYWHERE, valid_payload("RITM2", tenantId=B))
    budgets = [ExportJob.from_input(job).quota_budget for _, _, job in client.started]
    assert budgets == [
        {"submitsPerDay": 1000, "pollsPerHour": 10_000},
        {"submitsPerDay": 3, "pollsPerHour": 2000},
    ]
    retried = ExportJob.from_input(client.started[1][2]).next_attempt({"phase": "failed"})
    assert retried.budget("submitsPerDay") == 3, "a retry keeps the budget of its intake"


def test_a_tenants_defaults_apply_unless_the_request_names_its_own(client) -> None:
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=B))
    submit(client, EVERYWHERE, valid_payload("R-2", tenantId=B, regulation="gdpr"))
    ccpa, gdpr = (job for _, _, job in client.started)
    assert ccpa["regulation"] == "ccpa"
    assert gdpr["regulation"] == "gdpr"
    deadline, warning = (ccpa["legalDeadline"], ccpa["warningAt"])
    assert (parse(deadline) - parse(warning)).days == 3


def parse(moment: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(moment)


def test_a_caller_bound_to_one_tenant_need_not_name_it(client) -> None:
    done = submit(client, bound(A), valid_payload("R-1"))
    assert done.verdict is Admission.STARTED
    assert client.started[0][1] == f"{KEY_A}:R-1"


def test_no_tenant_named_or_implied_is_a_400_naming_tenant_id(client) -> None:
    for caller in (EVERYWHERE, bound(A, B), bound()):
        done = submit(client, caller, valid_payload("R-1"))
        assert done.verdict is Admission.INVALID
        assert [e.pointer for e in done.errors] == ["/tenantId"]
    done = submit(client, EVERYWHERE, valid_payload("R-1", tenantId="contoso"))
    assert [e.pointer for e in done.errors] == ["/tenantId"]
    assert client.started == []


def test_unknown_and_unreached_tenants_get_one_404(client) -> None:
    unknown = refused(lambda: asyncio.run(_submit(client, EVERYWHERE, UNREGISTERED)))
    unreached = refused(lambda: asyncio.run(_submit(client, bound(A), UNREGISTERED)))
    assert unknown[0] == unreached[0] == 404
    assert unknown[1] == unreached[1]
    out_of_reach = refused(lambda: asyncio.run(_submit(client, bound(A), B)))
    registered_elsewhere = refused(lambda: asyncio.run(_submit(client, bound(B), A)))
    assert out_of_reach[0] == 404
    # The same body as for a tenant that is not registered at all (only the id echoed differs).
    assert out_of_reach[1]["title"] == unknown[1]["title"] == registered_elsewhere[1]["title"]
    assert out_of_reach[1]["detail"].replace(B, "X") == unknown[1]["detail"].replace(
        UNREGISTERED, "X"
    )
    assert client.started == [], "nothing starts before the tenant is resolved"


async def _submit(client: FakeDurableClient, caller: Caller, tenant: str) -> Any:
    return await service.submit(client, caller, valid_payload("R-1", tenantId=tenant), now=T0)


def test_a_request_id_too_long_for_the_pair_is_refused(client) -> None:
    done = submit(client, EVERYWHERE, valid_payload("R" * 100, tenantId=A))
    assert done.verdict is Admission.INVALID
    assert [e.pointer for e in done.errors] == ["/requestId"]
    assert "87" in done.errors[0].detail
    assert submit(client, EVERYWHERE, valid_payload("R" * 87, tenantId=A)).verdict is (
        Admission.STARTED
    )


def test_every_log_line_of_the_dsr_names_its_tenant(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dsr_export")
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    accepted = [r for r in caplog.records if r.getMessage().startswith("dsr_accepted")]
    assert accepted
    assert f"tenant_id={A}" in accepted[0].getMessage()
    assert accepted[0].tenant_id == A


def test_the_evidence_of_each_tenant_lies_under_its_prefix(client, evidence_log) -> None:
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    assert f"{KEY_A}:R-1" in evidence_log.records, "the chain is the pair's"
    assert "R-1" not in evidence_log.records


# -- the routes -----------------------------------------------------------------------------------
def test_a_route_takes_the_dsr_id_or_the_request_id_with_its_tenant() -> None:
    pair = f"{KEY_A}:R-1"
    assert tenancy.route_dsr_id(pair, EVERYWHERE) == pair
    assert tenancy.route_dsr_id(pair.lower(), EVERYWHERE) == pair
    assert tenancy.route_dsr_id("r-1", EVERYWHERE, A) == pair
    assert tenancy.route_dsr_id(pair, EVERYWHERE, A) == pair
    assert tenancy.route_dsr_id("R-1", bound(A)) == pair, "the caller's one tenant"
    status, problem = refused(lambda: tenancy.route_dsr_id("R-1", EVERYWHERE))
    assert status == 400
    assert [e["pointer"] for e in problem["errors"]] == ["/tenantId"]


def test_a_dsr_out_of_reach_is_answered_as_one_that_does_not_exist(client) -> None:
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    pair = f"{KEY_A}:R-1"
    hub: Any = client
    # What a caller reaching A gets for a DSR that does not exist in A.
    missing = refused(lambda: asyncio.run(service.status(hub, f"{KEY_A}:R-404")))
    for caller, hint in ((bound(B), None), (bound(B), A), (bound(), None), (bound(B), B)):
        for route_missing in (Refused.unknown, service.no_evidence):

            def read(
                caller: Caller = caller,
                hint: str | None = hint,
                route_missing: Callable[[str], Refused] = route_missing,
            ) -> Any:
                dsr = tenancy.route_dsr_id(pair, caller, hint, missing=route_missing)
                return asyncio.run(service.status(hub, dsr))

            status, problem = refused(read)
            expected = route_missing(f"{KEY_A}:R-404").response()
            assert status == 404
            assert problem == {
                **json.loads(expected.get_body()),
                "detail": json.loads(expected.get_body())["detail"].replace("R-404", "R-1"),
            }
    assert missing[0] == 404
    # Reached, it reads: by its id, or by the request id and the tenant.
    assert tenancy.route_dsr_id(pair, bound(A)) == pair


def dsr_get(request_id: str, **params: str) -> Any:
    return request(
        "GET", f"exports/{request_id}", route_params={"requestId": request_id}, params=params
    )


def test_the_routes_answer_with_the_dsrs_tenant(client, user_function) -> None:
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    pair = f"{KEY_A}:R-1"
    get = user_function("get_dsr")
    by_id = call(get, client, req=dsr_get(pair))
    by_tenant = call(get, client, req=dsr_get("r-1", tenantId=A))
    assert by_id.status_code == by_tenant.status_code == 200
    assert body(by_id)["tenantId"] == body(by_tenant)["tenantId"] == A
    assert body(by_id)["requestId"] == pair
    other = call(get, client, req=dsr_get("R-1", tenantId=B))
    assert other.status_code == 404


def test_the_list_shows_a_caller_its_tenants_dsrs_only(client, user_function) -> None:
    for tenant in (A, B):
        submit(client, EVERYWHERE, valid_payload("RITM0012345", tenantId=tenant))
    hub: Any = client

    def listed(caller: Caller, hint: str | None = None) -> list[str]:
        query = listing.ListQuery(None, None, 50, None, tenancy.listed_tenants(caller, hint))
        rows, _ = asyncio.run(listing.page(hub, query, T0))
        return [str(doc.tenant_id) for _, doc in rows]

    assert sorted(listed(EVERYWHERE)) == sorted([A, B])
    assert listed(EVERYWHERE, B) == [B]
    assert listed(bound(A)) == [A]
    assert listed(bound(A), B) == [], "a tenant out of reach lists nothing"
    assert listed(bound()) == []
    route = call(
        user_function("list_dsrs"), client, req=request("GET", "exports", params={"tenantId": A})
    )
    assert [item["tenantId"] for item in body(route)["items"]] == [A]


# -- consent --------------------------------------------------------------------------------------
class _Refusing:
    def __init__(self, message: str) -> None:
        self.message = message

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        raise ClientAuthenticationError(message=self.message)


class _Credentials:
    def __init__(self, message: str) -> None:
        self.message = message
        self.forgotten: list[str] = []

    def for_tenant(self, tenant_id: str | None) -> Any:
        return _Refusing(self.message)

    def forget(self, tenant_id: str) -> None:
        self.forgotten.append(tenant_id)


def test_a_tenant_without_consent_fails_its_graph_steps_naming_the_fix(swap) -> None:
    credentials = _Credentials(
        "AADSTS700016: Application with identifier 'x' was not found in the directory"
    )
    swap(tenant_credentials=credentials)
    graph = composition.graph_of(f"{KEY_A}:R-1")
    with pytest.raises(TenantConsentMissing) as caught:
        graph.resolve_user_id("adele@contoso.example")
    assert credentials.forgotten == [A], "no stale credential kept"
    error = setup_error(caught.value)
    assert error is not None
    assert error["code"] == "TenantConsentMissing"
    assert f"/api/tenants/{A}/consent-link" in error["hint"]
    assert "adele" not in json.dumps(error)


def test_another_token_refusal_is_not_taken_for_missing_consent(swap) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    swap(tenant_credentials=_Credentials("AADSTS50013: Assertion failed signature validation."))
    with pytest.raises(ClientAuthenticationError):
        composition.graph_of(f"{KEY_B}:R-1").resolve_user_id("adele@contoso.example")


def test_a_dsr_of_no_registered_tenant_gets_no_graph_client() -> None:
    with pytest.raises(LookupError):
        composition.graph_of(f"{dsr_keys.tenant_key(UNREGISTERED)}:R-1")


# -- the queue ------------------------------------------------------------------------------------
def test_a_queue_message_names_its_tenant_or_is_recorded_as_refused(
    client, user_function, swap
) -> None:
    from datetime import UTC, datetime

    from azure.functions.queue import QueueMessage

    from tests.unit.intake_fakes import ListSink

    sink = ListSink()
    swap(rejections=sink)

    def deliver(body: dict[str, Any]) -> None:
        msg = QueueMessage(
            id="msg-1",
            body=json.dumps(body).encode(),
            dequeue_count=1,
            insertion_time=datetime(2026, 3, 1, 8, 59, tzinfo=UTC),
        )
        asyncio.run(user_function("intake_dsr_message").client_function(msg=msg, client=client))

    deliver(valid_payload("RITM0012345", tenantId=A))
    deliver(valid_payload("RITM0012345", tenantId=B))
    deliver(valid_payload("RITM0012346"))
    deliver(valid_payload("RITM0012347", tenantId=UNREGISTERED))
    assert [instance for _, instance, _ in client.started] == [
        f"{KEY_A}:RITM0012345",
        f"{KEY_B}:RITM0012345",
    ]
    assert [(r["requestId"], [e["pointer"] for e in r["errors"]]) for r in sink.records] == [
        ("RITM0012346", ["/tenantId"]),
        ("RITM0012347", ["/tenantId"]),
    ]


# -- the orchestration, through the SDK's replay ---------------------------------------------
def test_a_tenants_dsr_asks_its_tenants_gate_and_shows_its_tenant() -> None:
    """The input's ``tenantId`` keys the submit gate and reaches the custom status; an input
    without it (written before tenants) asks the home tenant's gate, as it always did."""
    from datetime import timedelta

    from tests import answers
    from tests.replay import Driver

    def first_ask(tenant: str | None = None) -> tuple[str | None, dict[str, Any]]:
        job = ExportJob(
            request_id=f"{KEY_A}:RITM1" if tenant else "RITM1",
            user=USER_ID,
            user_id=USER_ID,
            legal_deadline=(T0 + timedelta(days=3)).isoformat(),
            received_at=T0.isoformat(),
            tenant_id=tenant,
        )
        d = Driver("export_personal_data", job.to_input(), now=T0, entities={})
        d.episode()
        reply = d.complete(answers.prepared(settle_seconds=0))
        return d.entity_calls("ask")[-1].target, reply["customStatus"]

    target, status = first_ask(A)
    assert target == f"@submit_gate@{A}"
    assert status["tenantId"] == A
    target, status = first_ask()
    assert target == "@submit_gate@home"
    assert "tenantId" not in status


def test_a_key_bound_to_one_tenant_sees_only_it_through_every_dsr_route(
    client, user_function
) -> None:
    """The real authentication gives the key its binding's scope; every DSR route then answers
    another tenant's DSR with the 404 of a DSR that does not exist, and the list is its own."""
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=B))
    of_a, of_b = f"{KEY_A}:R-1", f"{KEY_B}:R-1"
    routes = [
        ("get_dsr", "GET", ""),
        ("get_evidence", "GET", "/evidence"),
        ("cancel_dsr", "POST", "/cancel"),
        ("download_export", "POST", "/download"),
        ("extend_deadline", "POST", "/extend"),
        ("retry_dsr", "POST", "/retry"),
        ("erase_data", "DELETE", "/data"),
        ("export_package", "GET", "/package"),
        ("review_package", "GET", "/package/review"),
    ]
    body_of = {"reason": "withdrawn", "days": 10, "reasonCode": "other"}

    def answer(name: str, method: str, tail: str, dsr: str, key: str) -> Any:
        req = request(
            method, f"exports/{dsr}{tail}", body_of, route_params={"requestId": dsr}, key=key
        )
        return call(user_function(name), client, req=req)

    for name, method, tail in routes:
        theirs = answer(name, method, tail, of_a, B_KEY)
        missing = answer(name, method, tail, f"{KEY_A}:R-404", FUNCTION_KEY)
        assert theirs.status_code == missing.status_code == 404, name
        assert body(theirs) == {
            **body(missing),
            "detail": body(missing)["detail"].replace("R-404", "R-1"),
        }, name
    assert client.events == [], "nothing reached A's DSR"
    assert answer("get_dsr", "GET", "", of_b, B_KEY).status_code == 200
    own = call(user_function("get_dsr"), client, req=_keyed("r-1"))
    assert own.status_code == 200
    assert body(own)["requestId"] == of_b, "the key's one tenant names the DSR"
    listed = call(user_function("list_dsrs"), client, req=request("GET", "exports", key=B_KEY))
    assert [item["requestId"] for item in body(listed)["items"]] == [of_b]


def _keyed(request_id: str) -> Any:
    return request(
        "GET", f"exports/{request_id}", route_params={"requestId": request_id}, key=B_KEY
    )


def test_a_retired_tenant_takes_no_new_dsr_and_its_dsrs_stay_readable(client, registry) -> None:
    from dsr_export.domain import tenants

    submit(client, EVERYWHERE, valid_payload("R-1", tenantId=A))
    registry.tenants[A] = tenants.retire(registry.tenants[A], T0, {"kind": "test", "id": "op"})
    retired = refused(lambda: asyncio.run(_submit(client, EVERYWHERE, A)))
    unknown = refused(lambda: asyncio.run(_submit(client, EVERYWHERE, UNREGISTERED)))
    assert retired[0] == unknown[0] == 404
    assert retired[1]["title"] == unknown[1]["title"]
    assert retired[1]["detail"].replace(A, "X") == unknown[1]["detail"].replace(UNREGISTERED, "X")
    assert len(client.started) == 1
    assert tenancy.route_dsr_id(f"{KEY_A}:R-1", EVERYWHERE) == f"{KEY_A}:R-1"
