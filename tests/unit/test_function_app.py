"""What ``import function_app`` registers, listed the way the worker and the offline host do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dsr_export.domain import steps


def _by_trigger(functions: tuple[Any, ...], kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for fn in functions:
        if fn.get_trigger().type == kind:
            trigger = next(
                json.loads(b) for b in fn.get_raw_bindings() if json.loads(b)["type"] == kind
            )
            found[fn.get_function_name()] = trigger
    return found


def test_the_orchestrator_and_every_step_of_the_contract_are_registered(app_functions):
    from dsr_export.domain.package_manifest import PACKAGE_ORCHESTRATOR
    from dsr_export.domain.steps import NOTICE_ORCHESTRATOR, ORCHESTRATOR

    orchestrators = set(_by_trigger(app_functions, "orchestrationTrigger"))
    # The names the intake starts them by (it does not import the orchestrations).
    assert orchestrators == {ORCHESTRATOR, NOTICE_ORCHESTRATOR, PACKAGE_ORCHESTRATOR}
    assert set(_by_trigger(app_functions, "activityTrigger")) == set(steps.STEPS)


def test_the_http_face_needs_the_function_key_except_the_public_keys(app_functions):
    http = _by_trigger(app_functions, "httpTrigger")
    routes = {
        (trigger["route"], method) for trigger in http.values() for method in trigger["methods"]
    }
    assert {("exports", "POST"), ("exports/{requestId}", "GET")} <= routes
    anonymous = {name for name, t in http.items() if t["authLevel"] != "FUNCTION"}
    # The JWKS is public by design: anyone holding a package checks its receipt with it.
    assert anonymous == {"get_jwks"}
    assert http["get_jwks"]["authLevel"] == "ANONYMOUS"
    assert http["get_jwks"]["methods"] == ["GET"]


def test_the_queue_intake_listens_on_dsr_requests_in_host_storage(app_functions):
    queues = _by_trigger(app_functions, "queueTrigger")
    assert [(q["queueName"], q["connection"]) for q in queues.values()] == [
        ("dsr-requests", "AzureWebJobsStorage")
    ]


def test_the_retention_run_is_daily_and_not_on_startup(app_functions):
    [timer] = _by_trigger(app_functions, "timerTrigger").values()
    assert timer["schedule"] == "0 30 2 * * *"
    assert timer.get("runOnStartup") in (None, False), "a restart must not delete anything"


def test_the_health_check_is_there_for_the_smoke_test(app_functions):
    routes = {t["route"] for t in _by_trigger(app_functions, "httpTrigger").values()}
    assert "health" in routes


@pytest.mark.parametrize("name", ["submit_dsr", "get_dsr"])
def test_client_functions_are_async(user_function, name):
    import inspect

    assert inspect.iscoroutinefunction(user_function(name).client_function)


def test_every_function_reads_as_the_worker_reads_it(app_functions):
    """The Python worker resolves each function's type hints (``typing.get_type_hints``) and
    binds its parameters by name: a route wrapped by ``intake.verdicts.answers`` still takes
    ``req`` and ``client`` and answers an ``HttpResponse``."""
    import inspect
    import typing

    import azure.functions as func

    checked = 0
    for function in app_functions:
        user = function.get_user_function()
        hints = typing.get_type_hints(user)
        if "req" in inspect.signature(user).parameters:
            assert hints["return"] is func.HttpResponse, function.get_function_name()
            checked += 1
    assert checked >= 10
