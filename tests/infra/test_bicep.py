"""Offline checks of the Bicep in infra/: it parses, and it says what the security design says.

There is no Bicep compiler or Azure here, so the templates are read with ``pycep-parser`` and a
small evaluator for the expressions the templates use (variables, parameters, ``==``, ``!``,
``?:``, ``??``, ``union``). The evaluator resolves a name only when it is a variable or a
parameter given a value by the test; anything else (``storage.id``, ``listKeys()``) stays as
pycep's parse tree, so a check can still ask *what* it refers to. pycep spells an identifier and
a string literal the same way (``allowSharedKeyAccess: isStoredPolicy`` parses to the string
``"isStoredPolicy"``), which is why names are only resolved against the template's own
variables and parameters.

What this cannot see: whether Azure accepts the property values or API versions (only a real
deployment or ``az bicep build`` can), and what the Graph extension will do at deploy time.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"

#: Built-in Azure role definition ids, checked against Microsoft's built-in roles list.
ROLE_IDS: dict[str, str] = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
ROLE_NAMES = {guid: name for name, guid in ROLE_IDS.items()}

#: Microsoft Graph application permissions (app role ids), from Graph's permissions reference.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_APP_ROLES = {
    "405a51b5-8d8d-430b-9842-8be4b0e9f324": "User.Export.All",
    "df021288-bdef-4463-88db-98f22de89214": "User.Read.All",
}

MODES = ("stored-policy", "user-delegation")
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


# ---------------------------------------------------------------------------------------------
# Reading templates


@functools.cache
def _parser() -> BicepParser:
    return BicepParser(cache=False)


@functools.cache
def template(path: str) -> dict[str, Any]:
    """The pycep parse tree of one file (path relative to infra/)."""
    return dict(_parser().parse(file_path=INFRA / path))


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


def resources(doc: Mapping[str, Any], type_: str | None = None) -> dict[str, dict[str, Any]]:
    """Resources of a template, by symbolic name, optionally of one type."""
    found = doc.get("resources", {})
    return {k: v for k, v in found.items() if type_ is None or v["type"] == type_}


def body(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, without the ``if (...)`` wrapper pycep adds."""
    config = resource["config"]
    return dict(config["config"]) if "condition" in config else dict(config)


def condition(resource: Mapping[str, Any]) -> Any:
    """The ``if (...)`` condition, or True when the resource is unconditional."""
    return resource["config"].get("condition", True)


class Unresolved(str):
    """A name the evaluator could not resolve (a parameter the test gave no value)."""


def evaluate(node: Any, doc: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    """Evaluate the subset of Bicep expressions these templates use.

    ``params`` gives values to parameters; a parameter without one evaluates to
    :class:`Unresolved` with its name. Functions and property accessors other than ``union``
    are returned as their parse tree.
    """
    params = params or {}
    if node is None or isinstance(node, bool | int | float):
        return node
    if isinstance(node, str):
        if node in params:
            return params[node]
        variables = doc.get("variables", {})
        if node in variables:
            return evaluate(variables[node]["value"], doc, params)
        if node in doc.get("parameters", {}):
            return Unresolved(node)
        return node
    if isinstance(node, list):
        return [evaluate(item, doc, params) for item in node]
    if "operator" in node:
        op = node["operator"]
        operands = op.get("operands", {})
        kind = op["type"]
        if kind == "equals":
            left = evaluate(operands["operand_1"], doc, params)
            right = evaluate(operands["operand_2"], doc, params)
            return Unresolved(f"{left}=={right}") if _unresolved(left, right) else left == right
        if kind == "not":
            value = evaluate(operands["bool_value"], doc, params)
            return value if isinstance(value, Unresolved) else not value
        if kind == "conditional":
            test = evaluate(operands["condition"], doc, params)
            if isinstance(test, Unresolved):
                return test
            branch = operands["true_value"] if test else operands["false_value"]
            return evaluate(branch, doc, params)
        if kind == "coalesce":
            first = evaluate(operands["operand_1"], doc, params)
            return evaluate(operands["operand_2"], doc, params) if first is None else first
        return node
    if "function" in node:
        fn = node["function"]
        if fn["type"] == "union":
            merged: dict[str, Any] = {}
            for arg in fn["parameters"].values():
                value = evaluate(arg, doc, params)
                assert isinstance(value, dict), f"union of a non-object: {value!r}"
                merged.update(value)
            return merged
        return node
    # pycep keeps the quotes of quoted keys ('azd-service-name'); Bicep does not.
    return {key.strip("'"): evaluate(value, doc, params) for key, value in node.items()}


def _unresolved(*values: Any) -> bool:
    return any(isinstance(v, Unresolved) for v in values)


def accessor_path(node: Any) -> list[str]:
    """``a.b.c`` (pycep's nested property accessors) as ``["a", "b", "c"]``; [] otherwise."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return accessor_path(operands["operand_1"]) + accessor_path(operands["operand_2"])
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "function_accessor":
        operands = node["operator"]["operands"]
        return [*accessor_path(operands["operand_1"]), f"{operands['func_name']}()"]
    return []


def contains_call(node: Any, name: str) -> bool:
    """Whether an expression calls ``name`` (a function or a resource method) anywhere."""
    if isinstance(node, dict):
        op = node.get("operator", {})
        if op.get("type") == "function_accessor" and op["operands"].get("func_name") == name:
            return True
        if node.get("function", {}).get("type") == name:
            return True
        return any(contains_call(v, name) for v in node.values())
    if isinstance(node, list):
        return any(contains_call(v, name) for v in node)
    return False


def param_default(doc: Mapping[str, Any], name: str) -> Any:
    return doc["parameters"][name].get("default")


def decorators(doc: Mapping[str, Any], name: str, section: str = "parameters") -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in doc[section][name]["decorators"]}


def module_file(doc: Mapping[str, Any], symbol: str) -> str:
    return str(doc["modules"][symbol]["detail"]["path"])


def module_params(doc: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    return dict(body(doc["modules"][symbol])["params"])


def only(mapping: Mapping[str, Any]) -> Any:
    assert len(mapping) == 1, f"expected exactly one, got {sorted(mapping)}"
    return next(iter(mapping.values()))


def role_assignments(path: str, mode: str) -> list[tuple[str, str, str]]:
    """(role name, scope resource type, principal) of the grants a module makes in a SAS mode."""
    doc = template(path)
    grants = []
    for symbol, resource in resources(doc, ROLE_ASSIGNMENT).items():
        if evaluate(condition(resource), doc, {"sasMode": mode}) is not True:
            continue
        props = body(resource)["properties"]
        role_fn = props["roleDefinitionId"]["function"]
        assert role_fn["type"] == "subscription_resource_id", symbol
        assert role_fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid = evaluate(role_fn["parameters"]["resource_name_1"], doc)
        assert guid in ROLE_NAMES, f"{path}:{symbol}: unknown role definition {guid}"
        scope = body(resource).get("scope")
        assert isinstance(scope, str), f"{path}:{symbol} has no resource scope"
        assert scope in resources(doc), f"{path}:{symbol}: scope {scope} is not a resource here"
        grants.append((ROLE_NAMES[guid], resources(doc)[scope]["type"], props["principalId"]))
    return sorted(grants)


def app_settings(mode: str) -> dict[str, Any]:
    """The function app's app settings in one SAS mode (values partly unresolved)."""
    doc = template("modules/function-app.bicep")
    config = only(resources(doc, "Microsoft.Web/sites/config"))
    assert body(config)["name"] == "appsettings"
    settings = evaluate(body(config)["properties"], doc, {"sasMode": mode})
    assert isinstance(settings, dict)
    return settings


# ---------------------------------------------------------------------------------------------
# Parsing and structure


@pytest.mark.parametrize("path", bicep_files())
def test_every_bicep_file_parses(path: str) -> None:
    doc = template(path)
    assert doc.get("resources") or doc.get("modules"), f"{path} declares nothing"


def test_the_expected_files_exist() -> None:
    assert set(bicep_files()) >= {
        "main.bicep",
        "modules/identity.bicep",
        "modules/monitoring.bicep",
        "modules/host-storage.bicep",
        "modules/export-storage.bicep",
        "modules/keyvault.bicep",
        "modules/function-app.bicep",
        "modules/graph-app-roles.bicep",
    }


def test_main_uses_every_module_and_passes_valid_params() -> None:
    """No Bicep compiler here: at least check module wiring (names and required params)."""
    main = template("main.bicep")
    used = {module_file(main, symbol) for symbol in main["modules"]}
    assert used == {p for p in bicep_files() if p.startswith("modules/")}
    for symbol in main["modules"]:
        path = module_file(main, symbol)
        declared = template(path)["parameters"]
        passed = module_params(main, symbol)
        unknown = set(passed) - set(declared)
        assert not unknown, f"main.bicep passes unknown params {unknown} to {path}"
        required = {n for n, p in declared.items() if "default" not in p or p["default"] is None}
        missing = required - set(passed)
        assert not missing, f"main.bicep does not pass required params {missing} to {path}"


def test_no_preview_api_versions() -> None:
    for path in bicep_files():
        for symbol, resource in resources(template(path)).items():
            version = resource["api_version"]
            assert "preview" not in version, f"{path}:{symbol} uses {version}"


def test_main_parameters_file_matches_main_bicep() -> None:
    main = template("main.bicep")
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(values) <= set(main["parameters"]), "main.parameters.json sets unknown params"
    without_default = {n for n, p in main["parameters"].items() if p.get("default") is None}
    nullable = {"exportSasLifetimeDays"}  # `int?`: null means "the mode's default"
    assert without_default - nullable <= set(values)
    # The secret comes from the azd environment (generated by the preprovision hook), never
    # from a literal in the repository.
    assert values["callbackSigningSecret"]["value"] == "${CALLBACK_SIGNING_SECRET}"


def test_azure_yaml_deploys_the_repo_as_a_python_function_app() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert config["infra"]["path"] == "infra"
    api = config["services"]["api"]
    assert (api["host"], api["language"]) == ("function", "python")
    assert (ROOT / api["project"] / "function_app.py").exists()
    hook = config["hooks"]["preprovision"]["posix"]["run"]
    assert "infra/scripts/preprovision.sh" in hook
    # azd finds the app through this tag; it must name the service above.
    doc = template("modules/function-app.bicep")
    tag_expr = body(only(resources(doc, "Microsoft.Web/sites")))["tags"]["function"]
    assert tag_expr["type"] == "union"
    parts = [evaluate(arg, doc) for arg in tag_expr["parameters"].values()]
    assert {"azd-service-name": "api"} in parts


def test_bicepconfig_pins_the_graph_extension() -> None:
    text = re.sub(r"^\s*//.*$", "", (INFRA / "bicepconfig.json").read_text(), flags=re.M)
    alias = json.loads(text)["extensions"]["microsoftGraphV1"]
    assert re.fullmatch(
        r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+(-\w+)?", alias
    )


# ---------------------------------------------------------------------------------------------
# Host storage


def _account(path: str) -> dict[str, Any]:
    doc = template(path)
    return body(only(resources(doc, "Microsoft.Storage/storageAccounts")))


def test_host_storage_is_identity_only_https_tls12_private() -> None:
    account = _account("modules/host-storage.bicep")
    props = account["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False


def test_host_storage_has_the_request_queue_and_deployment_container() -> None:
    doc = template("modules/host-storage.bicep")
    queue = body(only(resources(doc, "Microsoft.Storage/storageAccounts/queueServices/queues")))
    assert queue["name"] == "requestQueueName"
    main = template("main.bicep")
    assert module_params(main, "hostStorage")["requestQueueName"] == "dsr-requests"
    assert param_default(doc, "requestQueueName") == "dsr-requests"
    container = body(
        only(resources(doc, "Microsoft.Storage/storageAccounts/blobServices/containers"))
    )
    assert container["name"] == "deploymentContainerName"
    assert container["properties"]["publicAccess"] == "None"


def test_host_storage_roles_are_what_durable_functions_needs() -> None:
    for mode in MODES:
        assert role_assignments("modules/host-storage.bicep", mode) == [
            ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts", "appPrincipalId"),
            (
                "Storage Queue Data Contributor",
                "Microsoft.Storage/storageAccounts",
                "appPrincipalId",
            ),
            (
                "Storage Table Data Contributor",
                "Microsoft.Storage/storageAccounts",
                "appPrincipalId",
            ),
        ]


# ---------------------------------------------------------------------------------------------
# Export storage


@pytest.mark.parametrize("mode", MODES)
def test_export_storage_security_properties(mode: str) -> None:
    doc = template("modules/export-storage.bicep")
    account = evaluate(_account("modules/export-storage.bicep"), doc, {"sasMode": mode})
    assert account["kind"] == "StorageV2"
    assert not str(account["sku"]["name"]).startswith("Premium"), "Graph needs append blobs"
    props = account["properties"]
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    # Shared key only where the design needs it: signing stored-policy SAS with the key.
    assert props["allowSharedKeyAccess"] is (mode == "stored-policy")


def test_export_storage_has_blob_soft_delete_and_no_versioning() -> None:
    doc = template("modules/export-storage.bicep")
    service = body(only(resources(doc, "Microsoft.Storage/storageAccounts/blobServices")))
    props = service["properties"]
    assert props["deleteRetentionPolicy"] == {"enabled": True, "days": "softDeleteDays"}
    assert props["containerDeleteRetentionPolicy"]["enabled"] is True
    assert props["isVersioningEnabled"] is False
    assert decorators(doc, "softDeleteDays")["min_value"] >= 1


def test_export_lifecycle_deletes_every_blob_n_days_after_creation() -> None:
    doc = template("modules/export-storage.bicep")
    policy = body(only(resources(doc, "Microsoft.Storage/storageAccounts/managementPolicies")))
    rules = policy["properties"]["policy"]["rules"]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["enabled"] is True
    assert rule["type"] == "Lifecycle"
    definition = rule["definition"]
    # Graph writes RequestInfo.json as an append blob: a block-blob-only rule would leave it.
    assert set(definition["filters"]["blobTypes"]) == {"blockBlob", "appendBlob"}
    assert "prefixMatch" not in definition["filters"], "the rule must cover every container"
    delete = definition["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterCreationGreaterThan": "retentionDays"}
    assert "retentionDays" in doc["parameters"]
    main = template("main.bicep")
    assert module_params(main, "exportStorage")["retentionDays"] == "exportRetentionDays"


def test_retention_outlasts_the_export_timeout_by_default() -> None:
    """Blobs written on day 1 of a 45-day export must still exist when it completes."""
    main = template("main.bicep")
    retention = param_default(main, "exportRetentionDays")
    timeout = param_default(main, "exportTimeoutDays")
    assert retention > timeout
    assert decorators(main, "exportRetentionDays")["max_value"] <= 365


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "stored-policy",
            [("Key Vault Secrets User", "Microsoft.KeyVault/vaults/secrets", "appPrincipalId")],
        ),
        (
            "user-delegation",
            [
                (
                    "Storage Blob Data Contributor",
                    "Microsoft.Storage/storageAccounts",
                    "appPrincipalId",
                )
            ],
        ),
    ],
)
def test_export_roles_follow_the_sas_mode(mode: str, expected: list[tuple[str, str, str]]) -> None:
    assert role_assignments("modules/export-storage.bicep", mode) == expected


def test_account_key_goes_to_key_vault_only_in_stored_policy_mode() -> None:
    doc = template("modules/export-storage.bicep")
    secret = only(resources(doc, "Microsoft.KeyVault/vaults/secrets"))
    assert evaluate(condition(secret), doc, {"sasMode": "stored-policy"}) is True
    assert evaluate(condition(secret), doc, {"sasMode": "user-delegation"}) is False
    assert accessor_path(body(secret)["properties"]["value"])[:2] == ["storage", "listKeys()"]


def test_no_output_exposes_a_key_or_secret() -> None:
    for path in bicep_files():
        doc = template(path)
        secure = {n for n in doc.get("parameters", {}) if "secure" in decorators(doc, n)}
        for name, output in doc.get("outputs", {}).items():
            value = output["value"]
            assert not contains_call(value, "listKeys"), f"{path}: output {name} lists keys"
            assert not contains_call(value, "list_keys"), f"{path}: output {name} lists keys"
            assert not (set(accessor_path(value)) & secure), f"{path}: output {name} is secret"


# ---------------------------------------------------------------------------------------------
# Key Vault


def test_key_vault_uses_rbac_and_soft_delete() -> None:
    doc = template("modules/keyvault.bicep")
    vault = body(only(resources(doc, "Microsoft.KeyVault/vaults")))["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert "accessPolicies" not in vault


def test_callback_secret_comes_from_a_secure_parameter() -> None:
    for path, name in (
        ("main.bicep", "callbackSigningSecret"),
        ("modules/keyvault.bicep", "callbackSigningSecret"),
    ):
        assert "secure" in decorators(template(path), name), f"{path}: {name} not @secure()"
        assert param_default(template(path), name) is None, f"{path}: {name} has a default"
    doc = template("modules/keyvault.bicep")
    secret = body(only(resources(doc, "Microsoft.KeyVault/vaults/secrets")))
    assert secret["properties"]["value"] == "callbackSigningSecret"


def test_key_vault_grants_are_per_secret() -> None:
    assert role_assignments("modules/keyvault.bicep", "stored-policy") == [
        ("Key Vault Secrets User", "Microsoft.KeyVault/vaults/secrets", "appPrincipalId")
    ]


# ---------------------------------------------------------------------------------------------
# Function app and monitoring


def test_function_app_is_flex_consumption_python_311_with_user_assigned_identity() -> None:
    doc = template("modules/function-app.bicep")
    plan = body(only(resources(doc, "Microsoft.Web/serverfarms")))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = body(only(resources(doc, "Microsoft.Web/sites")))
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["keyVaultReferenceIdentity"] == "identityId"
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_basic_publishing_credentials_are_off() -> None:
    doc = template("modules/function-app.bicep")
    policies = resources(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {
        "scm": False,
        "ftp": False,
    }


@pytest.mark.parametrize("mode", MODES)
def test_secrets_are_key_vault_references(mode: str) -> None:
    settings = app_settings(mode)
    references = {k for k, v in settings.items() if str(v).startswith("@Microsoft.KeyVault(")}
    expected = {"CALLBACK_SIGNING_SECRET"} | (
        {"EXPORT_STORAGE_ACCOUNT_KEY"} if mode == "stored-policy" else set()
    )
    assert references == expected
    assert not contains_call(settings, "listKeys"), "a key in clear text in the app settings"
    for key in expected:
        assert re.fullmatch(r"@Microsoft\.KeyVault\(SecretUri=\$\{\w+\}\)", settings[key])
    assert settings["EXPORT_SAS_MODE"] == mode


def test_host_storage_and_telemetry_settings_use_the_identity() -> None:
    settings = app_settings("stored-policy")
    assert "AzureWebJobsStorage" not in settings, "no connection string for host storage"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identityClientId};Authorization=AAD"
    )


def test_sas_lifetime_default_fits_the_mode() -> None:
    main = template("main.bicep")
    lifetime = main["variables"]["sasLifetimeDays"]["value"]
    for mode, limit in (("user-delegation", 7), ("stored-policy", 60)):
        value = evaluate(lifetime, main, {"exportSasMode": mode, "exportSasLifetimeDays": None})
        assert value == limit, mode
    assert module_params(main, "functionApp")["sasLifetimeDays"] == "sasLifetimeDays"


def test_sas_mode_parameter() -> None:
    main = template("main.bicep")
    assert decorators(main, "exportSasMode")["allowed"] == list(MODES)
    assert param_default(main, "exportSasMode") == "stored-policy"
    for module in ("exportStorage", "functionApp"):
        assert module_params(main, module)["sasMode"] == "exportSasMode"


def test_application_insights_accepts_entra_tokens_only() -> None:
    doc = template("modules/monitoring.bicep")
    component = body(only(resources(doc, "Microsoft.Insights/components")))
    assert component["properties"]["DisableLocalAuth"] is True
    assert component["properties"]["WorkspaceResourceId"]
    assert role_assignments("modules/monitoring.bicep", "stored-policy") == [
        ("Monitoring Metrics Publisher", "Microsoft.Insights/components", "appPrincipalId")
    ]


# ---------------------------------------------------------------------------------------------
# Every role assignment, everywhere


def test_every_role_assignment_is_justified_and_resource_scoped() -> None:
    """Each grant has a `// Why ...` comment above it and a resource (not group) scope."""
    for path in bicep_files():
        text = (INFRA / path).read_text()
        doc = template(path)
        for symbol, resource in resources(doc, ROLE_ASSIGNMENT).items():
            match = re.search(rf"((?://[^\n]*\n)+)resource {symbol} '", text)
            assert match, f"{path}:{symbol} has no comment"
            assert "why" in match.group(1).lower(), f"{path}:{symbol}: comment lacks a why"
            assert body(resource)["scope"] in resources(doc), f"{path}:{symbol} scope"
            assert body(resource)["properties"]["principalType"] == "ServicePrincipal"


def test_role_variables_name_their_role() -> None:
    """A GUID swapped between two variables would grant the wrong role: names must agree."""
    for path in bicep_files():
        for name, variable in template(path).get("variables", {}).items():
            value = variable["value"]
            if isinstance(value, str) and value in ROLE_NAMES:
                role = ROLE_NAMES[value].replace(" ", "").lower()
                assert role in name.lower(), f"{path}: {name} holds the id of {ROLE_NAMES[value]}"


def test_no_broad_roles_anywhere() -> None:
    granted = {
        grant[0]
        for path in bicep_files()
        for mode in MODES
        for grant in role_assignments(path, mode)
    }
    assert granted <= set(ROLE_IDS)
    texts = "".join((INFRA / p).read_text() for p in bicep_files())
    for broad in (
        "8e3af657-bb00-4899-acbc-f0f7f5db61aa",  # Owner
        "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
        "17d1049b-9a84-46fb-8f53-869881c3d3ab",  # Storage Account Contributor
    ):
        assert broad not in texts


# ---------------------------------------------------------------------------------------------
# Graph app roles (the Microsoft Graph Bicep extension)


def test_graph_app_roles_module() -> None:
    """pycep parses `extension` and the Microsoft.Graph types as ordinary resources: these
    checks cover what the template declares (which roles, to whom, on which service principal),
    not whether the extension accepts it at deploy time."""
    doc = template("modules/graph-app-roles.bicep")
    assert "microsoftGraphV1" in doc["extensions"]
    graph = only(resources(doc, "Microsoft.Graph/servicePrincipals"))
    assert graph["existing"] is True
    assert evaluate(body(graph)["appId"], doc) == GRAPH_APP_ID
    graph_symbol = next(iter(resources(doc, "Microsoft.Graph/servicePrincipals")))
    assignments = resources(doc, "Microsoft.Graph/appRoleAssignedTo")
    granted = set()
    for assignment in assignments.values():
        config = body(assignment)
        assert config["principalId"] == "appPrincipalId"
        assert accessor_path(config["resourceId"]) == [graph_symbol, "id"]
        granted.add(evaluate(config["appRoleId"], doc))
    assert granted == set(GRAPH_APP_ROLES)
    main = template("main.bicep")
    module = main["modules"]["graphAppRoles"]
    assert condition(module) == "grantGraphAppRoles"
    assert param_default(main, "grantGraphAppRoles") is True


def test_only_the_graph_module_uses_the_extension() -> None:
    for path in bicep_files():
        uses = bool(template(path).get("extensions")) or bool(
            resources(template(path), "Microsoft.Graph/appRoleAssignedTo")
        )
        assert uses == (path == "modules/graph-app-roles.bicep"), path


# ---------------------------------------------------------------------------------------------
# The script alternative


SCRIPT = INFRA / "scripts" / "grant-graph-permissions.sh"

FAKE_AZ = r"""#!/usr/bin/env bash
# Records every call; answers the Graph reads the script makes.
printf '%s\n' "$*" >> "$AZ_LOG"
args="$*"
case "$args" in
  *"servicePrincipals(appId="*) echo "$GRAPH_SP" ;;
  *"select=displayName"*) echo "func-dsr identity" ;;
  *"/appRoleAssignments"*) printf '%s\n' $EXISTING ;;
  *"select=appRoles"*)
    case "$args" in
      *User.Export.All*) echo "405a51b5-8d8d-430b-9842-8be4b0e9f324" ;;
      *User.Read.All*) echo "df021288-bdef-4463-88db-98f22de89214" ;;
    esac ;;
  *"--method POST"*) : ;;
  *) echo "unexpected az call: $args" >&2; exit 9 ;;
esac
"""


def _run_script(
    tmp_path: Path, existing: str = "", principal: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text(FAKE_AZ)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "az.log"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AZ_LOG": str(log),
        "GRAPH_SP": "11111111-2222-3333-4444-555555555555",
        "EXISTING": existing,
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), principal], env=env, capture_output=True, text=True, check=False
    )
    return result, log.read_text() if log.exists() else ""


def test_grant_script_is_executable_bash() -> None:
    assert SCRIPT.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_grant_script_assigns_both_roles_to_the_identity(tmp_path: Path) -> None:
    result, log = _run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    posts = [line for line in log.splitlines() if "--method POST" in line]
    assert len(posts) == 2
    for post, role_id in zip(posts, GRAPH_APP_ROLES, strict=True):
        assert "/servicePrincipals/11111111-2222-3333-4444-555555555555/appRoleAssignedTo" in post
        assert '"principalId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"' in post
        assert f'"appRoleId": "{role_id}"' in post


def test_grant_script_is_idempotent(tmp_path: Path) -> None:
    result, log = _run_script(tmp_path, existing=" ".join(GRAPH_APP_ROLES))
    assert result.returncode == 0, result.stderr
    assert "--method POST" not in log
    assert result.stdout.count("already granted") == 2


def test_grant_script_refuses_a_client_id_that_is_not_a_guid(tmp_path: Path) -> None:
    result, log = _run_script(tmp_path, principal="func-dsr-identity")
    assert result.returncode != 0
    assert "GUID" in result.stderr
    assert log == "", "nothing may be called before the input is checked"


# ---------------------------------------------------------------------------------------------
# Docs stay in step with the parameters


def test_deploy_doc_mentions_every_main_parameter() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in template("main.bicep")["parameters"]:
        assert f"`{name}`" in doc, f"docs/deploy.md does not document parameter {name}"


# ---------------------------------------------------------------------------------------------
# Wiring in main.bicep


def test_every_grant_goes_to_the_one_app_identity() -> None:
    main = template("main.bicep")
    for symbol in main["modules"]:
        params = module_params(main, symbol)
        if "appPrincipalId" in params:
            assert accessor_path(params["appPrincipalId"]) == ["identity", "outputs", "principalId"]
    app = module_params(main, "functionApp")
    assert accessor_path(app["identityId"]) == ["identity", "outputs", "id"]
    assert accessor_path(app["identityClientId"]) == ["identity", "outputs", "clientId"]


def test_function_app_waits_for_the_modules_that_grant_its_access() -> None:
    """The app reads outputs of these modules, so ARM deploys them (and their role
    assignments) before the app; without that the first start could fail on storage."""
    main = template("main.bicep")
    used = {
        path[0]
        for value in module_params(main, "functionApp").values()
        if len(path := accessor_path(value)) > 2 and path[1] == "outputs"
    }
    assert used >= {"monitoring", "hostStorage", "keyVault", "exportStorage"}


# ---------------------------------------------------------------------------------------------
# The preprovision hook (callback signing secret)

PREPROVISION = INFRA / "scripts" / "preprovision.sh"

FAKE_AZD = r"""#!/usr/bin/env bash
# A one-value azd environment kept in $AZD_ENV_FILE.
case "$1 $2" in
  "env get-value")
    [[ -s "$AZD_ENV_FILE" ]] || { echo "not found" >&2; exit 1; }
    cat "$AZD_ENV_FILE" ;;
  "env set") printf '%s' "$4" > "$AZD_ENV_FILE" ;;
  *) echo "unexpected azd call: $*" >&2; exit 9 ;;
esac
"""


def _run_preprovision(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "azd"
    fake.write_text(FAKE_AZD)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env_file = tmp_path / "secret"
    env_file.touch()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AZD_ENV_FILE": str(env_file),
        "HOME": str(tmp_path),
    }
    subprocess.run(["bash", str(PREPROVISION)], env=env, check=True, capture_output=True)
    return env_file.read_text()


def test_preprovision_generates_a_standard_webhooks_secret_once(tmp_path: Path) -> None:
    first = _run_preprovision(tmp_path)
    match = re.fullmatch(r"whsec_([A-Za-z0-9+/]+=*)", first)
    assert match, first
    assert len(base64.b64decode(match.group(1))) == 32
    # A second provision keeps it: rotating it would break every receiver's verification.
    assert _run_preprovision(tmp_path) == first
    assert len(first) >= decorators(template("main.bicep"), "callbackSigningSecret")["min_length"]
