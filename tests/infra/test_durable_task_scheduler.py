"""The Durable Task Scheduler as the task hub backend (main.bicep ``durableBackend``): the
module parses and says what the design says, main.bicep deploys it in that mode only, and the
app is pointed at it with an identity and no key.

Read through :mod:`tests.infra.bicep_model`. Checkov does not read a conditional module's
switch, so both backends and both SKUs are evaluated here. What this cannot see: whether Azure
accepts the resource shapes (no compiler, no deployment here), and how the scheduler behaves.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.bicep_model import (
    BACKENDS,
    INFRA,
    MODES,
    ROLE_ASSIGNMENT,
    ROLE_IDS,
    ROOT,
    accessor_path,
    app_settings,
    body,
    condition,
    decorators,
    evaluate,
    module_file,
    module_params,
    only,
    param_default,
    resources,
    role_assignments,
    template,
)

MODULE = "modules/durable-task-scheduler.bicep"
SCHEDULER = "Microsoft.DurableTask/schedulers"
TASK_HUB = "Microsoft.DurableTask/schedulers/taskHubs"
RETENTION = "Microsoft.DurableTask/schedulers/retentionPolicies"
#: The built-in role, from Azure's built-in roles list (Integration).
DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"
#: Days a SKU keeps data at most (Durable Task Scheduler billing: Dedicated 90, Consumption 30).
MAX_RETENTION = {"dedicated": 90, "consumption": 30}
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
HOST_JSON = json.loads((ROOT / "host.json").read_text())


def _scheduler(sku: str, isolated: bool) -> dict[str, Any]:
    doc = template(MODULE)
    given = {"sku": sku, "networkIsolation": isolated, "privateAddressPrefix": "10.90.0.0/23"}
    scheduler = evaluate(body(only(resources(doc, SCHEDULER))), doc, given)
    assert isinstance(scheduler, dict)
    return scheduler


def _main_params(backend: str) -> dict[str, Any]:
    return {"durableBackend": backend, "networkIsolation": False}


# ---------------------------------------------------------------------------------------------
# main.bicep: a parameter, off by default, and the module in that mode only


def test_backend_parameters_default_to_azure_storage_and_dedicated() -> None:
    main = template("main.bicep")
    assert decorators(main, "durableBackend")["allowed"] == list(BACKENDS)
    assert param_default(main, "durableBackend") == "azureStorage"
    assert decorators(main, "durableTaskSchedulerSku")["allowed"] == list(MAX_RETENTION)
    assert param_default(main, "durableTaskSchedulerSku") == "dedicated"
    assert PARAMETERS["durableBackend"]["value"] == "${DURABLE_BACKEND=azureStorage}"
    assert PARAMETERS["durableTaskSchedulerSku"]["value"] == (
        "${DURABLE_TASK_SCHEDULER_SKU=dedicated}"
    )
    doc = template(MODULE)
    assert decorators(doc, "sku")["allowed"] == list(MAX_RETENTION)
    assert param_default(doc, "sku") == "dedicated"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_scheduler_is_deployed_only_on_its_backend(backend: str) -> None:
    main = template("main.bicep")
    assert module_file(main, "durableTaskScheduler") == MODULE
    deployed = evaluate(
        condition(main["modules"]["durableTaskScheduler"]), main, {"durableBackend": backend}
    )
    assert deployed is (backend == "durableTaskScheduler")
    params = module_params(main, "durableTaskScheduler")
    assert params["sku"] == "durableTaskSchedulerSku"
    assert params["networkIsolation"] == "networkIsolation"
    assert params["privateAddressPrefix"] == "vnetAddressPrefix"


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_storage_is_kept_on_both_backends(backend: str) -> None:
    """The Functions host, the dsr-requests queue and the deployment package live there."""
    main = template("main.bicep")
    assert condition(main["modules"]["hostStorage"]) is True
    app = module_params(main, "functionApp")
    assert accessor_path(app["deploymentContainerUrl"])[:2] == ["hostStorage", "outputs"]
    settings = app_settings("stored-policy", backend)
    assert settings["AzureWebJobsStorage__queueServiceUri"] == "hostQueueEndpoint"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"


def test_the_task_hub_keeps_host_jsons_name() -> None:
    """One name on both backends: host.json's hubName, and the scheduler's task hub."""
    main = template("main.bicep")
    hub = evaluate("taskHubName", main)
    assert hub == HOST_JSON["extensions"]["durableTask"]["hubName"] == "dsrexport"
    assert module_params(main, "durableTaskScheduler")["taskHubName"] == "taskHubName"
    assert re.fullmatch(r"[a-zA-Z0-9-]{3,64}", hub), "the task hub name pattern"


@pytest.mark.parametrize("backend", BACKENDS)
def test_main_wires_the_scheduler_into_the_app(backend: str) -> None:
    main = template("main.bicep")
    app = module_params(main, "functionApp")
    assert app["durableBackend"] == "durableBackend"
    given = _main_params(backend)
    endpoint = evaluate(app["durableTaskSchedulerEndpoint"], main, given)
    hub = evaluate(app["durableTaskHubName"], main, given)
    if backend == "durableTaskScheduler":
        # Read from the module's outputs: the app waits for the task hub and the role on it.
        assert accessor_path(endpoint) == ["durableTaskScheduler", "outputs", "endpoint"]
        assert accessor_path(hub) == ["durableTaskScheduler", "outputs", "taskHubName"]
    else:
        assert (endpoint, hub) == ("", "")
    network = evaluate(module_params(main, "network")["schedulerId"], main, given)
    if backend == "durableTaskScheduler":
        assert accessor_path(network) == ["durableTaskScheduler", "outputs", "id"]
    else:
        assert network == ""
    doc = template(MODULE)
    assert accessor_path(doc["outputs"]["endpoint"]["value"]) == [
        "scheduler",
        "properties",
        "endpoint",
    ]
    assert accessor_path(doc["outputs"]["taskHubName"]["value"]) == ["taskHub", "name"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_name_the_backend_and_the_dashboard(backend: str) -> None:
    main = template("main.bicep")
    outputs = {
        name: evaluate(o["value"], main, _main_params(backend))
        for name, o in main["outputs"].items()
        if name.startswith("DURABLE_")
    }
    assert outputs["DURABLE_BACKEND"] == backend
    assert outputs["DURABLE_TASK_HUB_NAME"] == "dsrexport"
    dashboard = outputs["DURABLE_TASK_DASHBOARD_URL"]
    if backend == "durableTaskScheduler":
        assert accessor_path(dashboard) == ["durableTaskScheduler", "outputs", "dashboardUrl"]
    else:
        assert dashboard == ""


# ---------------------------------------------------------------------------------------------
# The module: scheduler, task hub, retention


@pytest.mark.parametrize(
    ("sku", "expected"),
    [
        ("dedicated", {"name": "Dedicated", "capacity": 1}),
        ("consumption", {"name": "Consumption"}),
    ],
)
def test_scheduler_sku(sku: str, expected: dict[str, Any]) -> None:
    assert _scheduler(sku, isolated=False)["properties"]["sku"] == expected


@pytest.mark.parametrize("isolated", [True, False])
def test_scheduler_network_access_follows_network_isolation(isolated: bool) -> None:
    props = _scheduler("dedicated", isolated)["properties"]
    if isolated:
        # The app comes through the private endpoint (network.bicep); nothing else may.
        assert props["publicNetworkAccess"] == "Disabled"
        assert props["ipAllowlist"] == ["10.90.0.0/23"]
    else:
        assert props["publicNetworkAccess"] == "Enabled"
        # Flex Consumption has no fixed outbound address; an empty list refuses everything.
        assert props["ipAllowlist"] == ["0.0.0.0/0"]
    doc = template(MODULE)
    assert param_default(doc, "networkIsolation") is False


def test_one_task_hub_on_the_scheduler() -> None:
    doc = template(MODULE)
    hub = body(only(resources(doc, TASK_HUB)))
    assert hub["parent"] == "scheduler"
    assert hub["name"] == "taskHubName"
    assert decorators(doc, "taskHubName")["max_length"] == 64


@pytest.mark.parametrize("sku", list(MAX_RETENTION))
def test_finished_instances_are_kept_as_long_as_the_sku_allows(sku: str) -> None:
    doc = template(MODULE)
    policy = body(only(resources(doc, RETENTION)))
    assert policy["parent"] == "scheduler"
    assert policy["name"] == "default"
    rules = evaluate(policy["properties"]["retentionPolicies"], doc, {"sku": sku})
    # One rule without orchestrationState: it covers every purgeable (finished) state.
    assert rules == [{"retentionPeriodInDays": MAX_RETENTION[sku]}]


def test_the_module_uses_generally_available_api_versions() -> None:
    doc = template(MODULE)
    versions = {r["type"]: r["api_version"] for r in resources(doc).values()}
    for type_ in (SCHEDULER, TASK_HUB, RETENTION):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", versions[type_]), type_


# ---------------------------------------------------------------------------------------------
# Security: identity only, one role, the app's identity


def test_the_app_identity_gets_durable_task_data_contributor_on_the_task_hub() -> None:
    assert ROLE_IDS["Durable Task Data Contributor"] == DATA_CONTRIBUTOR
    for mode in MODES:
        assert role_assignments(MODULE, mode) == [
            ("Durable Task Data Contributor", TASK_HUB, "appPrincipalId")
        ]
    doc = template(MODULE)
    grant = body(only(resources(doc, ROLE_ASSIGNMENT)))
    assert grant["properties"]["principalType"] == "ServicePrincipal"
    assert evaluate("durableTaskDataContributorRoleId", doc) == DATA_CONTRIBUTOR
    main = template("main.bicep")
    principal = module_params(main, "durableTaskScheduler")["appPrincipalId"]
    assert accessor_path(principal) == ["identity", "outputs", "principalId"]


def test_the_scheduler_has_no_keys_and_no_secret_outputs() -> None:
    text = (INFRA / MODULE).read_text()
    assert "listKeys" not in text
    assert "@secure" not in text
    doc = template(MODULE)
    assert set(doc["outputs"]) == {
        "id",
        "name",
        "endpoint",
        "taskHubName",
        "dashboardUrl",
        "retentionDays",
    }


@pytest.mark.parametrize("mode", MODES)
def test_the_app_signs_in_to_the_scheduler_with_its_managed_identity(mode: str) -> None:
    settings = app_settings(mode, "durableTaskScheduler")
    prefix = "AzureFunctionsJobHost__extensions__durableTask__"
    assert settings[f"{prefix}storageProvider__type"] == "azureManaged"
    assert settings[f"{prefix}storageProvider__connectionStringName"] == (
        "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    )
    assert settings[f"{prefix}hubName"] == "durableTaskHubName"
    connection = settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]
    # Endpoint, identity-based authentication, and which identity: the app's only one.
    assert connection == (
        "Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;"
        "ClientID=${identityClientId}"
    )
    parts = dict(part.split("=", 1) for part in connection.split(";"))
    assert set(parts) == {"Endpoint", "Authentication", "ClientID"}, "no key of any kind"
    assert not str(connection).startswith("@Microsoft.KeyVault("), "nothing secret to hide"
    main = template("main.bicep")
    app = module_params(main, "functionApp")
    assert accessor_path(app["identityClientId"]) == ["identity", "outputs", "clientId"]


@pytest.mark.parametrize("mode", MODES)
def test_azure_storage_backend_leaves_host_json_alone(mode: str) -> None:
    settings = app_settings(mode, "azureStorage")
    assert not [k for k in settings if k.startswith("AzureFunctionsJobHost__")]
    assert "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" not in settings
    provider = HOST_JSON["extensions"]["durableTask"]["storageProvider"]
    assert "type" not in provider, "host.json itself stays on Azure Storage"


def test_the_scheduler_gets_a_private_endpoint_when_isolated() -> None:
    doc = template("modules/network.bicep")
    assert param_default(doc, "schedulerId") == ""
    zones = evaluate(doc["variables"]["zoneNames"]["value"], doc)
    assert zones["scheduler"] == "privatelink.durabletask.io"
    endpoint = evaluate("schedulerEndpoint", doc, {"schedulerId": "/x/schedulers/dts"})
    assert endpoint == {"name": "scheduler", "target": "/x/schedulers/dts", "groupId": "scheduler"}


# ---------------------------------------------------------------------------------------------
# Docs


def _section(path: str, title: str) -> str:
    text = (ROOT / "docs" / path).read_text()
    match = re.search(rf"^##+ {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/{path} has no section '{title}'"
    return match.group(1)


def test_operations_doc_has_the_scheduler_dashboard() -> None:
    section = _section("operations.md", "Durable Task Scheduler")
    for needle in ("dashboard", "DURABLE_TASK_DASHBOARD_URL", "Durable Task Data Reader"):
        assert needle in section, needle


def test_architecture_doc_explains_the_backend_choice_and_retention() -> None:
    section = _section(
        "architecture.md", "Task hub backend: Azure Storage or the Durable Task Scheduler"
    )
    for needle in ("continue", "30 days", "90 days", "EXPORT_TIMEOUT_DAYS", "Docker"):
        assert needle in section, needle
