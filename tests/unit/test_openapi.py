"""The OpenAPI document: valid 3.1, the same routes as the app (both ways), the deployed copy
equal to the one in docs/, and the intake's real answers valid against its schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from dsr_export.domain import steps
from dsr_export.domain.job import ExportJob
from intake import http_api
from tests import answers
from tests.replay import Driver
from tests.unit.intake_fakes import (
    ALL_ROLES,
    ALLOWED,
    SECRET,
    T0,
    FakeDurableClient,
    app_settings,
    call,
    request,
    valid_payload,
)

SPEC: dict[str, Any] = json.loads(http_api.OPENAPI_PATH.read_text(encoding="utf-8"))


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
    return {(path, method) for path, item in SPEC["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_every_route_is_documented_and_every_documented_path_exists(app_functions):
    assert _http_routes(app_functions) == _documented()


def test_every_operation_documents_the_hosts_401():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            assert "401" in operation["responses"], f"{method} {path}"


def test_docs_holds_the_served_document():
    assert Path("docs/openapi.json").read_text(encoding="utf-8") == http_api.OPENAPI_PATH.read_text(
        encoding="utf-8"
    )


def _validator(schema: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with app_settings(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_ALLOWED_HOSTS=ALLOWED,
        AUTH_FUNCTION_KEY_ROLES=ALL_ROLES,
    ):
        yield


def test_real_answers_match_the_documented_schemas(user_function):
    client = FakeDurableClient()
    submit = request("POST", "exports", valid_payload(regulation={"days": 30}))
    accepted = call(user_function("submit_dsr"), client, req=submit)
    _validator("StatusDocument").validate(json.loads(accepted.get_body()))
    client.add(
        "R-done",
        runtime="Completed",
        output={
            "phase": "completed",
            "completedAt": "2026-03-20T10:00:00+00:00",
            "manifest": {"blobCount": 1, "totalBytes": 2, "products": {"Exchange": 1}},
            "sas": {"revoked": True, "expiresAt": None},
            "callbacks": {"failed": ["dsr.accepted"]},
            "deadline": "2026-04-01T09:00:00+00:00",
            "regulation": "gdpr",
        },
    )
    page = call(user_function("list_dsrs"), client, req=request("GET", "exports"))
    _validator("StatusPage").validate(json.loads(page.get_body()))
    assert len(json.loads(page.get_body())["items"]) == 2
    refused = call(user_function("submit_dsr"), client, req=request("POST", "exports", {"user": 1}))
    _validator("Problem").validate(json.loads(refused.get_body()))


def test_documented_examples_are_valid_requests():
    examples = SPEC["paths"]["/exports"]["post"]["requestBody"]["content"]["application/json"]
    for example in examples["examples"].values():
        _validator("ExportRequest").validate(example["value"])
    event = SPEC["webhooks"]["dsrEvent"]["post"]["requestBody"]["content"]["application/json"]
    _validator("CallbackEvent").validate(event["example"])


def test_the_orchestrators_callback_events_match_the_documented_schema():
    job = ExportJob(
        request_id="RITM0001",
        user="6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b",
        user_id="6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b",
        legal_deadline="2026-03-01T09:30:00+00:00",
        warning_at="2026-02-22T09:30:00+00:00",
        callback_url="https://tickets.example.com/cb",
    )
    d = Driver("export_personal_data", job.to_input())
    delivered = answers.DELIVERED
    callback = steps.SEND_CALLBACK.name
    d.episode()
    d.complete(delivered, name=callback)
    d.complete(answers.prepared(settle_seconds=0))
    d.complete(answers.accepted(retry_after=3600))
    d.complete(delivered, name=callback)  # exporting
    d.complete(delivered, name=callback)  # deadline warning (already due)
    d.fire_timer()  # clamped to the deadline
    d.complete(answers.checked("running", 50))
    d.complete(delivered, name=callback)  # overdue, at the next round
    d.fire_timer()
    d.complete(answers.checked("complete", 100))
    manifest = {"blobCount": 1, "totalBytes": 2, "products": {}, "manifestBlob": "m"}
    d.complete(answers.finalized(manifest))
    d.complete(delivered, name=callback)  # completed
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
