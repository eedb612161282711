"""The OpenAPI document: valid 3.1, the same routes as the app (both ways), the deployed copy
equal to the one in docs/, its examples true (each request example is accepted by the real
route, each response example fits its schema), the app roles it names the ones the routes
demand, and the intake's real answers valid against its schemas."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from dsr_export.domain import evidence_entries as entries
from dsr_export.domain import lifecycle, steps
from dsr_export.domain.callers import Role
from dsr_export.domain.job import CANCEL_EVENT, Ending, ExportJob
from dsr_export.domain.status import (
    DataFate,
    PackageStage,
    PackageState,
    Phase,
    ReviewState,
    StatusDocument,
    status_document,
)
from intake import http_api
from tests import answers
from tests.replay import Driver
from tests.unit.intake_fakes import (
    T0,
    USER_ID,
    FakeDurableClient,
    MemoryEvidence,
    app_settings,
    body,
    call,
    intake_settings,
    request,
    valid_payload,
)

TENANT = "00000000-0000-4000-8000-0000000000c1"
#: Operations that check a role without a Durable client (the tenant registry's).
GUARDED_WITHOUT_CLIENT = {
    "listTenants",
    "addTenant",
    "getTenant",
    "updateTenant",
    "getConsentLink",
    "retireTenant",
    "reinstateTenant",
    "listBindings",
    "getBinding",
    "putBinding",
    "deleteBinding",
}
SPEC: dict[str, Any] = json.loads(http_api.OPENAPI_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: The app function behind each operation, and a request that reaches its role check.
ROUTES: dict[str, tuple[str, bool, Callable[[], func.HttpRequest]]] = {
    "submitDsr": ("submit_dsr", True, lambda: request("POST", "exports", valid_payload())),
    "listDsrs": ("list_dsrs", True, lambda: request("GET", "exports")),
    "getDsr": (
        "get_dsr",
        True,
        lambda: request("GET", "exports/R-1", route_params={"requestId": "R-1"}),
    ),
    "cancelDsr": (
        "cancel_dsr",
        True,
        lambda: request(
            "POST", "exports/R-1/cancel", {"reason": "withdrawn"}, route_params={"requestId": "R-1"}
        ),
    ),
    "getEvidence": (
        "get_evidence",
        True,
        lambda: request("GET", "exports/R-1/evidence", route_params={"requestId": "R-1"}),
    ),
    "downloadExport": (
        "download_export",
        True,
        lambda: request("POST", "exports/R-1/download", route_params={"requestId": "R-1"}),
    ),
    "extendDeadline": (
        "extend_deadline",
        True,
        lambda: request(
            "POST",
            "exports/R-1/extend",
            {"reason": "complex", "days": 10},
            route_params={"requestId": "R-1"},
        ),
    ),
    "retryDsr": (
        "retry_dsr",
        True,
        lambda: request(
            "POST", "exports/R-1/retry", {"reason": "fixed"}, route_params={"requestId": "R-1"}
        ),
    ),
    "eraseData": (
        "erase_data",
        True,
        lambda: request(
            "DELETE", "exports/R-1/data", {"reason": "done"}, route_params={"requestId": "R-1"}
        ),
    ),
    "buildPackage": (
        "export_package",
        True,
        lambda: request("POST", "exports/R-1/package", route_params={"requestId": "R-1"}),
    ),
    "getPackage": (
        "export_package",
        True,
        lambda: request("GET", "exports/R-1/package", route_params={"requestId": "R-1"}),
    ),
    "getPackageReview": (
        "review_package",
        True,
        lambda: request("GET", "exports/R-1/package/review", route_params={"requestId": "R-1"}),
    ),
    "reviewPackage": (
        "review_package",
        True,
        lambda: request(
            "POST",
            "exports/R-1/package/review",
            {"approve": True},
            route_params={"requestId": "R-1"},
        ),
    ),
    "listTenants": ("tenants_collection", False, lambda: request("GET", "tenants")),
    "addTenant": (
        "tenants_collection",
        False,
        lambda: request("POST", "tenants", {"tenantId": TENANT, "displayName": "Contoso"}),
    ),
    "getTenant": (
        "tenant_item",
        False,
        lambda: request("GET", f"tenants/{TENANT}", route_params={"tenantId": TENANT}),
    ),
    "updateTenant": (
        "tenant_item",
        False,
        lambda: request(
            "PATCH", f"tenants/{TENANT}", {"displayName": "C"}, route_params={"tenantId": TENANT}
        ),
    ),
    "getConsentLink": (
        "tenant_consent_link",
        False,
        lambda: request("GET", f"tenants/{TENANT}/consent-link", route_params={"tenantId": TENANT}),
    ),
    "getGate": ("get_gate", True, lambda: request("GET", "gate")),
    "getTenantGate": (
        "get_tenant_gate",
        True,
        lambda: request("GET", f"gate/{TENANT}", route_params={"tenantId": TENANT}),
    ),
    "retireTenant": (
        "tenant_retire",
        False,
        lambda: request("POST", f"tenants/{TENANT}/retire", route_params={"tenantId": TENANT}),
    ),
    "reinstateTenant": (
        "tenant_reinstate",
        False,
        lambda: request("POST", f"tenants/{TENANT}/reinstate", route_params={"tenantId": TENANT}),
    ),
    "listBindings": ("bindings_collection", False, lambda: request("GET", "bindings")),
    "getBinding": (
        "binding_item",
        False,
        lambda: request("GET", f"bindings/{TENANT}", route_params={"principal": TENANT}),
    ),
    "putBinding": (
        "binding_item",
        False,
        lambda: request(
            "PUT", f"bindings/{TENANT}", {"tenants": "*"}, route_params={"principal": TENANT}
        ),
    ),
    "deleteBinding": (
        "binding_item",
        False,
        lambda: request("DELETE", f"bindings/{TENANT}", route_params={"principal": TENANT}),
    ),
    "getOpenApi": ("openapi_document", False, lambda: request("GET", "openapi.json")),
    "getHealth": ("get_health", False, lambda: request("GET", "health")),
    "getJwks": ("get_jwks", False, lambda: request("GET", ".well-known/jwks.json")),
}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _http_routes(functions: tuple[Any, ...]) -> set[tuple[str, str]]:
    routes = set()
    for function in functions:
        trigger = function.get_trigger()
        if trigger.type != "httpTrigger":
            continue
        for method in trigger.methods:
            routes.add(("/" + trigger.route, str(method.value).lower()))
    return routes


def _documented() -> set[tuple[str, str]]:
    return {(path, method) for path, method, _ in _operations()}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A ``#/components/...`` reference followed (responses are shared that way)."""
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_every_route_is_documented_and_every_documented_path_exists(app_functions):
    assert _http_routes(app_functions) == _documented()
    assert set(ROUTES) == {operation["operationId"] for _, _, operation in _operations()}


def test_every_operation_documents_the_hosts_401():
    for path, method, operation in _operations():
        if operation.get("security") == []:  # anonymous: the host refuses no one
            assert "401" not in operation["responses"], f"{method} {path}"
            continue
        assert "401" in operation["responses"], f"{method} {path}"


def test_the_anonymous_operations_are_exactly_the_anonymous_routes(app_functions):
    documented = {path for path, _, op in _operations() if op.get("security") == []}
    anonymous = {
        "/" + trigger.route
        for trigger in (function.get_trigger() for function in app_functions)
        if trigger.type == "httpTrigger" and str(trigger.auth_level.value).lower() == "anonymous"
    }
    assert documented == anonymous == {"/.well-known/jwks.json"}


def test_every_role_guarded_operation_names_its_role_and_documents_403():
    roles = {role.value for role in Role}
    for path, method, operation in _operations():
        role = operation.get("x-required-role")
        if not _guarded(operation["operationId"]):
            assert role is None, f"{method} {path} checks no role"
            continue
        assert role in roles, f"{method} {path}"
        assert "403" in operation["responses"], f"{method} {path}"
        assert role in operation["description"], f"{method} {path}"
        named = {
            tuple(scopes)
            for requirement in operation["security"]
            for scopes in requirement.values()
        }
        assert named == {(), (role,)}, f"{method} {path}: {named}"


def test_docs_holds_the_served_document():
    assert Path("docs/openapi.json").read_text(encoding="utf-8") == http_api.OPENAPI_PATH.read_text(
        encoding="utf-8"
    )


def _validator(schema: dict[str, Any] | str) -> Draft202012Validator:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    root = {**schema, "components": SPEC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with intake_settings():
        yield


def _guarded(operation_id: str) -> bool:
    return ROUTES[operation_id][1] or operation_id in GUARDED_WITHOUT_CLIENT


def _answer(user_function: Callable[[str], Any], operation_id: str, client: Any = None) -> Any:
    name, durable, build = ROUTES[operation_id]
    entry = user_function(name)
    if durable:
        return call(entry, client or FakeDurableClient(), req=build())
    import asyncio  # here, not above: the tenant routes are the only async ones without a client

    answer = entry(req=build())
    return asyncio.run(answer) if asyncio.iscoroutine(answer) else answer


@pytest.mark.parametrize("operation_id", [op for op in ROUTES if _guarded(op)])
def test_the_documented_role_is_the_one_the_route_demands(user_function, operation_id):
    operation = next(op for _, _, op in _operations() if op["operationId"] == operation_id)
    role = operation["x-required-role"]
    others = ",".join(r.value for r in Role if r.value != role)
    with app_settings(AUTH_FUNCTION_KEY_ROLES=others):
        refused = _answer(user_function, operation_id)
    assert refused.status_code == 403
    assert role in body(refused)["detail"]
    media = operation["responses"]["403"]["content"]["application/problem+json"]
    _validator(media["schema"]).validate(body(refused))
    with app_settings(AUTH_FUNCTION_KEY_ROLES=role):
        allowed = _answer(user_function, operation_id)
    assert allowed.status_code not in (401, 403), body(allowed)


@pytest.mark.parametrize("operation_id", ["getOpenApi", "getHealth"])
def test_operations_without_a_role_take_any_key(user_function, operation_id):
    with app_settings(AUTH_FUNCTION_KEY_ROLES="none"):
        assert _answer(user_function, operation_id).status_code not in (401, 403)


def _request_examples(operation: dict[str, Any]) -> list[tuple[str, Any]]:
    media = operation["requestBody"]["content"]["application/json"]
    named = [(name, example["value"]) for name, example in media.get("examples", {}).items()]
    return named + ([("example", media["example"])] if "example" in media else [])


SUBMIT_EXAMPLES = _request_examples(SPEC["paths"]["/exports"]["post"])


@pytest.mark.parametrize(("name", "example"), SUBMIT_EXAMPLES, ids=[n for n, _ in SUBMIT_EXAMPLES])
def test_each_documented_request_example_is_accepted_by_the_submit_route(
    user_function, name, example
):
    _validator("ExportRequest").validate(example)
    client = FakeDurableClient()
    answer = call(user_function("submit_dsr"), client, req=request("POST", "exports", example))
    assert answer.status_code == 202, body(answer)
    _validator("StatusDocument").validate(body(answer))
    assert [started[1] for started in client.started] == [example["requestId"].upper()]


def test_the_documented_cancel_example_is_accepted_by_the_cancel_route(user_function):
    (_, example), *_ = _request_examples(SPEC["paths"]["/exports/{requestId}/cancel"]["post"])
    _validator("CancelRequest").validate(example)
    client = FakeDurableClient()
    client.add("RITM0012345", custom_status={"phase": "exporting"})
    cancel = request(
        "POST", "exports/RITM0012345/cancel", example, route_params={"requestId": "RITM0012345"}
    )
    answer = call(user_function("cancel_dsr"), client, req=cancel)
    assert answer.status_code == 202, body(answer)
    digest = hashlib.sha256(example["reason"].encode()).hexdigest()
    data = {"reasonCode": example["reasonCode"], "reasonSha256": digest}
    assert client.events == [("RITM0012345", CANCEL_EVENT, data)]


def _response_examples() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every example of every documented response, with the schema it claims to fit."""
    responses = [
        (f"{method} {path} {status}", _resolve(response))
        for path, method, operation in _operations()
        for status, response in operation["responses"].items()
    ]
    for where, response in responses:
        for media_type, media in response.get("content", {}).items():
            examples = [("example", media["example"])] if "example" in media else []
            examples += [(n, e["value"]) for n, e in media.get("examples", {}).items()]
            for name, example in examples:
                yield f"{where} {media_type} {name}", media["schema"], example


RESPONSE_EXAMPLES = list(_response_examples())


def test_responses_carry_examples():
    assert len(RESPONSE_EXAMPLES) >= 20


@pytest.mark.parametrize(
    ("where", "schema", "example"), RESPONSE_EXAMPLES, ids=[w for w, _, _ in RESPONSE_EXAMPLES]
)
def test_each_documented_response_example_fits_its_schema(where, schema, example):
    _validator(schema).validate(example)


def test_real_answers_match_the_documented_schemas(user_function):
    client = FakeDurableClient()
    submit = request("POST", "exports", valid_payload(regulation={"days": 30}))
    accepted = call(user_function("submit_dsr"), client, req=submit)
    _validator("StatusDocument").validate(body(accepted))
    client.add(
        "R-DONE",
        runtime="Completed",
        output={
            "phase": "completed",
            "completedAt": "2026-03-20T10:00:00+00:00",
            "manifest": {"blobCount": 1, "totalBytes": 2, "products": {"Exchange": 1}},
            "sas": {"revoked": True, "expiresAt": None},
            "callbacks": {"failed": ["dsr.accepted"]},
            "deadline": "2026-04-01T09:00:00+00:00",
            "regulation": "gdpr",
            "submittedBy": {"kind": "functionKey", "id": "sha256:0123456789abcdef"},
        },
    )
    page = call(user_function("list_dsrs"), client, req=request("GET", "exports"))
    _validator("StatusPage").validate(body(page))
    assert len(body(page)["items"]) == 2
    refused = call(user_function("submit_dsr"), client, req=request("POST", "exports", {"user": 1}))
    _validator("Problem").validate(body(refused))
    again = valid_payload(regulation="ccpa", callbackUrl="https://tickets.example.com/cb")
    conflict = call(user_function("submit_dsr"), client, req=request("POST", "exports", again))
    assert conflict.status_code == 409
    _validator("Problem").validate(body(conflict))
    assert {e["pointer"] for e in body(conflict)["errors"]} == {"/regulation", "/callbackUrl"}
    with app_settings(AUTH_FUNCTION_KEY_ROLES="none"):
        forbidden = call(user_function("list_dsrs"), client, req=request("GET", "exports"))
    assert forbidden.status_code == 403
    _validator("Problem").validate(body(forbidden))


def test_the_health_answer_matches_the_documented_schema(user_function, monkeypatch):
    for name in ("EXPORT_STORAGE_ACCOUNT_KEY", "GRAPH_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "EXPORT_STORAGE_BLOB_ENDPOINT", "https://stdsrexport01.blob.core.windows.net"
    )
    monkeypatch.setenv("EXPORT_SAS_MODE", "user-delegation")
    answer = user_function("get_health")(req=request("GET", "health"))
    assert answer.status_code == 200, body(answer)
    _validator("Health").validate(body(answer))
    assert set(body(answer)["configuration"]) == set(
        SPEC["components"]["schemas"]["Health"]["properties"]["configuration"]["properties"]
    )
    monkeypatch.setenv("EXPORT_SAS_MODE", "nonsense")
    failed = user_function("get_health")(req=request("GET", "health"))
    assert failed.status_code == 503
    _validator("HealthProblem").validate(body(failed))


def test_documented_examples_are_valid_requests():
    for path, method, operation in _operations():
        if "requestBody" not in operation:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        for name, example in _request_examples(operation):
            assert _validator(schema).is_valid(example), f"{method} {path} {name}"
    event = SPEC["webhooks"]["dsrEvent"]["post"]["requestBody"]["content"]["application/json"]
    _validator("CallbackEvent").validate(event["example"])


def _answer_each_step(d: Driver, manifest: dict[str, Any]) -> None:
    """Run the orchestration to its end: every callback delivered, Graph slow to finish (one
    running poll, past the deadline), timers fired as they come."""
    polls = 0
    for _ in range(200):
        action = d.pending()
        if action.kind == "timer":
            reply = d.fire_timer()
        elif action.name == steps.SEND_CALLBACK.name:
            reply = d.complete(answers.DELIVERED)
        elif action.name == steps.PREPARE_CONTAINER.name:
            reply = d.complete(answers.prepared(settle_seconds=0))
        elif action.name == steps.SUBMIT_EXPORT.name:
            reply = d.complete(answers.accepted(retry_after=3600))
        elif action.name == steps.CHECK_EXPORT.name:
            polls += 1
            reply = d.complete(
                answers.checked(*(("running", 50) if polls == 1 else ("complete", 100)))
            )
        elif action.name == steps.FINALIZE_EXPORT.name:
            reply = d.complete(answers.finalized(manifest))
        else:
            raise AssertionError(f"unexpected step {action}")
        if reply["isDone"]:
            return
    raise AssertionError("the orchestration did not end")


def test_the_orchestrators_callback_events_match_the_documented_schema():
    job = ExportJob(
        request_id="RITM0001",
        user=USER_ID,
        user_id=USER_ID,
        legal_deadline="2026-03-01T09:30:00+00:00",
        warning_at="2026-02-22T09:30:00+00:00",
        callback_url="https://tickets.example.com/cb",
    )
    d = Driver("export_personal_data", job.to_input())
    d.episode()
    _answer_each_step(d, {"blobCount": 1, "totalBytes": 2, "products": {}, "manifestBlob": "m"})
    callback = steps.SEND_CALLBACK.name
    events = [steps.SendCallback.from_dict(a.input).event for a in d.activities(callback)]
    assert [e["type"] for e in events] == [
        "dsr.accepted",
        "dsr.exporting",
        "dsr.deadline_warning",
        "dsr.deadline_overdue",
        "dsr.completed",
    ]
    for event in events:
        _validator("CallbackEvent").validate(event)


# -- the status document: its one serializer and the schema name the same fields ----------------


def _failed_then_purged(log: MemoryEvidence, request_id: str, at: datetime) -> None:
    """The evidence of a DSR that failed and whose history was purged 90 days later."""
    failed = entries.Finished(
        event_id="finished",
        phase="failed",
        error_code="UserNotFound",
        error_category="user",
        operation_id=None,
    )
    log.write(request_id, failed, at)
    purged = entries.HistoryPurged(event_id="purged", retention_days=90, evidence=True)
    log.write(request_id, purged, at + timedelta(days=90))


def _status_documents() -> dict[str, StatusDocument]:
    """Representative documents, each built the way a route builds it: a DSR pending, one
    exporting (extended, a callback failed), one retried, one completed with what the evidence
    adds (the data's fate, the package), and one whose history was purged."""
    now = datetime(2026, 3, 10, tzinfo=UTC)
    job = ExportJob(
        request_id="RITM0001",
        user=USER_ID,
        user_id=USER_ID,
        received_at="2026-03-01T09:00:00+00:00",
        regulation="gdpr",
        legal_deadline="2026-04-01T09:00:00+00:00",
        warning_at="2026-03-25T09:00:00+00:00",
        submitted_by={"kind": "functionKey", "id": "sha256:0123456789abcdef"},
    )
    running = job.replace(
        container="dsr-ritm0001-0000",
        operation_id="op-1",
        submitted_at="2026-03-01T09:05:00+00:00",
        graph_status="running",
        progress=40,
        poll_round=3,
        original_deadline="2026-03-31T09:00:00+00:00",
        extensions=(
            {
                "askId": "ask_1",
                "previousDeadline": "2026-03-31T09:00:00+00:00",
                "deadline": "2026-04-01T09:00:00+00:00",
                "days": 1,
            },
        ),
        refused_extensions=("ask_2",),
        failed_callbacks=("dsr.accepted",),
    )
    custom = running.status_body(Phase.EXPORTING, nextCheckAt="2026-03-10T01:00:00+00:00")
    failed = running.result(Ending(Phase.FAILED, {"code": "UserNotFound"}), now)
    retried = running.next_attempt(failed)
    manifest = {"blobCount": 1, "totalBytes": 2, "products": {"Exchange": 1}}
    done = running.result(
        Ending(Phase.COMPLETED),
        now,
        manifest=manifest,
        sas={"revoked": True, "expiresAt": None},
    )
    completed = status_document("RITM0001", "Completed", None, done, now, now, now=now)
    package = PackageState(
        state=PackageStage.SENT,
        package_sha256="ab" * 32,
        parts=2,
        packaged_at=now.isoformat(),
        review=ReviewState.APPROVED,
    )
    log = MemoryEvidence()
    _failed_then_purged(log, "RITM0001", now)
    purged = lifecycle.purged_status(log.records["RITM0001"])
    assert purged is not None
    return {
        "pending": status_document(
            "RITM0001", "Pending", None, None, now, now, now=now, legal=job.deadline_record()
        ),
        "exporting": status_document("RITM0001", "Running", custom, None, now, now, now=now),
        "retried": status_document(
            "RITM0001", "Pending", None, None, now, now, now=now, legal=retried.legal_record()
        ),
        "completed": dataclasses.replace(
            completed,
            data=DataFate(2, "deleted", "erasure_request", now.isoformat(), "rcpt_1"),
            package=package,
        ),
        "purged": purged,
        "multi-tenant": status_document(
            "0123456789AB:RITM0001",
            "Running",
            running.replace(
                request_id="0123456789AB:RITM0001",
                tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
            ).status_body(Phase.EXPORTING),
            None,
            now,
            now,
            now=now,
        ),
    }


STATUS_DOCUMENTS = _status_documents()


def _schema(name: str) -> dict[str, Any]:
    return dict(SPEC["components"]["schemas"][name])


@pytest.mark.parametrize("name", STATUS_DOCUMENTS)
def test_each_representative_status_document_fits_the_schema(name):
    """Every key the serializer writes is documented, and every required one is written."""
    shown = STATUS_DOCUMENTS[name].to_wire()
    schema = _schema("StatusDocument")
    assert set(shown) <= set(schema["properties"]), name
    assert set(schema["required"]) <= set(shown), name
    _validator("StatusDocument").validate(shown)


def test_the_status_serializer_and_the_schema_name_the_same_fields():
    """Both ways: the documents write every documented property between them, and the model
    has a field for each property and no other (a field added on one side only fails here)."""
    documented = set(_schema("StatusDocument")["properties"])
    written = set().union(*(doc.to_wire() for doc in STATUS_DOCUMENTS.values()))
    assert written == documented
    filled: dict[str, Any] = {f.name: 1 for f in dataclasses.fields(StatusDocument)}
    every = StatusDocument(**filled)
    assert set(every.to_wire()) == documented
    package = STATUS_DOCUMENTS["completed"].to_wire()["package"]
    assert set(package) == set(_schema("StatusPackage")["properties"])
    data = _schema("StatusDocument")["properties"]["data"]["properties"]
    assert set(STATUS_DOCUMENTS["completed"].to_wire()["data"]) == set(data)


def test_the_status_of_a_purged_dsr_fits_the_schema(user_function, evidence_log):
    """A purged DSR's status, answered from the evidence, is a status document like any other:
    the required fields are there (null when the legal clock is no longer counted)."""
    _failed_then_purged(evidence_log, "RITM0099", T0)
    answer = call(
        user_function("get_dsr"),
        FakeDurableClient(),
        req=request("GET", "exports/RITM0099", route_params={"requestId": "RITM0099"}),
    )
    assert answer.status_code == 200, body(answer)
    assert body(answer)["historyPurged"] is True
    _validator("StatusDocument").validate(body(answer))
