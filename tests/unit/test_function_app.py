"""What ``import function_app`` registers, listed the way the worker and the offline host do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.replay import FUNCTIONS as _FUNCTIONS  # get_functions() may run once per process


def _by_trigger(kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for fn in _FUNCTIONS:
        if fn.get_trigger().type == kind:
            trigger = next(
                json.loads(b) for b in fn.get_raw_bindings() if json.loads(b)["type"] == kind
            )
            found[fn.get_function_name()] = trigger
    return found


def test_the_orchestrator_and_its_activities_are_registered():
    assert set(_by_trigger("orchestrationTrigger")) == {"export_personal_data"}
    assert set(_by_trigger("activityTrigger")) == {
        "resolve_user",
        "prepare_container",
        "submit_export",
        "check_export",
        "finalize_export",
        "send_callback",
    }


def test_the_http_face_needs_the_function_key():
    routes = {
        (trigger["route"], method)
        for trigger in _by_trigger("httpTrigger").values()
        for method in trigger["methods"]
    }
    assert {("exports", "POST"), ("exports/{requestId}", "GET")} <= routes
    assert {t["authLevel"] for t in _by_trigger("httpTrigger").values()} == {"FUNCTION"}


def test_the_queue_intake_listens_on_dsr_requests_in_host_storage():
    queues = _by_trigger("queueTrigger")
    assert [(q["queueName"], q["connection"]) for q in queues.values()] == [
        ("dsr-requests", "AzureWebJobsStorage")
    ]


def test_the_health_check_is_there_for_the_smoke_test():
    routes = {t["route"] for t in _by_trigger("httpTrigger").values()}
    assert "health" in routes


@pytest.mark.parametrize("name", ["submit_dsr", "get_dsr"])
def test_client_functions_are_async(name):
    import inspect

    fn = next(f for f in _FUNCTIONS if f.get_function_name() == name)
    assert inspect.iscoroutinefunction(fn.get_user_function().client_function)
