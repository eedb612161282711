"""The infrastructure half of the security review: audit logs, Key Vault purge protection,
private networking, Entra ID in front of the app, access restrictions, key rotation.

Read through :mod:`tests.infra.bicep_model`. Checkov (``make checkov``) cannot evaluate a
``cond ? a : b`` or read a conditional resource, so these tests evaluate both branches of every
switch that the security design hangs on: what Checkov's skip list (infra/checkov-skips.toml)
says is covered here is covered here.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from dsr_export.domain.callers import Role
from tests.infra.bicep_model import (
    BACKENDS,
    INFRA,
    MODES,
    ROOT,
    accessor_path,
    body,
    condition,
    decorators,
    evaluate,
    module_file,
    module_params,
    only,
    param_default,
    resources,
    template,
)

DIAGNOSTICS = "Microsoft.Insights/diagnosticSettings"
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]


def _env_default(param: str) -> str:
    """The default azd substitutes for a main.bicep parameter (`${VAR=default}`)."""
    match = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", PARAMETERS[param]["value"])
    assert match, f"{param} has no azd default in main.parameters.json"
    return match.group(2)


def _env_var(param: str) -> str:
    match = re.fullmatch(r"\$\{(\w+)(=[^}]*)?\}", PARAMETERS[param]["value"])
    assert match, param
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# Audit logs: diagnostic settings to the Log Analytics workspace


def _diagnostics(path: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Diagnostic settings of a module: scope resource type -> (scope symbol, properties)."""
    doc = template(path)
    found = {}
    for symbol, setting in resources(doc, DIAGNOSTICS).items():
        assert condition(setting) is True, f"{path}:{symbol} must always be deployed"
        scope = body(setting)["scope"]
        assert scope in resources(doc), f"{path}:{symbol}: scope {scope} is not a resource here"
        found[resources(doc)[scope]["type"]] = (scope, body(setting)["properties"])
    return found


@pytest.mark.parametrize(
    ("path", "scope_type", "categories"),
    [
        ("modules/keyvault.bicep", "Microsoft.KeyVault/vaults", {"AuditEvent"}),
        (
            "modules/export-storage.bicep",
            "Microsoft.Storage/storageAccounts/blobServices",
            {"StorageRead", "StorageWrite", "StorageDelete"},
        ),
        (
            "modules/evidence-storage.bicep",
            "Microsoft.Storage/storageAccounts/blobServices",
            {"StorageRead", "StorageWrite", "StorageDelete"},
        ),
        ("modules/function-app.bicep", "Microsoft.Web/sites", {"FunctionAppLogs"}),
    ],
)
def test_audit_logs_go_to_the_workspace(path: str, scope_type: str, categories: set[str]) -> None:
    settings = _diagnostics(path)
    assert scope_type in settings, f"{path} sends no logs of its {scope_type}"
    _, props = settings[scope_type]
    assert props["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = {log["category"]: log["enabled"] for log in props["logs"]}
    assert logs == dict.fromkeys(categories, True)
    assert "logAnalyticsWorkspaceId" in template(path)["parameters"]
    assert param_default(template(path), "logAnalyticsWorkspaceId") is None, "must be wired"


def test_every_audited_module_gets_the_one_workspace() -> None:
    main = template("main.bicep")
    for symbol in ("keyVault", "exportStorage", "evidenceStorage", "functionApp"):
        workspace = module_params(main, symbol)["logAnalyticsWorkspaceId"]
        assert accessor_path(workspace) == ["monitoring", "outputs", "workspaceId"], symbol
    monitoring = template("modules/monitoring.bicep")
    output = monitoring["outputs"]["workspaceId"]["value"]
    assert accessor_path(output) == ["workspace", "id"]


def test_the_export_blob_log_covers_the_service_graph_writes_to() -> None:
    doc = template("modules/export-storage.bicep")
    scope, _ = _diagnostics("modules/export-storage.bicep")[
        "Microsoft.Storage/storageAccounts/blobServices"
    ]
    service = body(resources(doc)[scope])
    assert service["parent"] == "storage"
    assert service["name"] == "default"


# ---------------------------------------------------------------------------------------------
# Key Vault: purge protection on by default


def test_key_vault_purge_protection_is_on_by_default_end_to_end() -> None:
    main = template("main.bicep")
    assert param_default(main, "keyVaultPurgeProtection") is True
    assert _env_default("keyVaultPurgeProtection") == "true"
    assert module_params(main, "keyVault")["purgeProtection"] == "keyVaultPurgeProtection"
    doc = template("modules/keyvault.bicep")
    assert param_default(doc, "purgeProtection") is True
    vault = body(only(resources(doc, "Microsoft.KeyVault/vaults")))["properties"]
    on = evaluate(vault, doc, {"purgeProtection": True, "networkIsolation": False})
    off = evaluate(vault, doc, {"purgeProtection": False, "networkIsolation": False})
    assert on["enablePurgeProtection"] is True
    # Key Vault refuses an explicit false: off means the property is left out.
    assert off["enablePurgeProtection"] is None
    assert on["enableSoftDelete"] is True
    assert on["softDeleteRetentionInDays"] == 90


# ---------------------------------------------------------------------------------------------
# networkIsolation: private endpoints, VNet integration, public access off


def test_network_isolation_is_a_parameter_off_by_default() -> None:
    main = template("main.bicep")
    assert param_default(main, "networkIsolation") is False
    assert _env_default("networkIsolation") == "false"
    assert condition(main["modules"]["network"]) == "networkIsolation"
    assert module_file(main, "network") == "modules/network.bicep"
    for symbol in ("hostStorage", "evidenceStorage", "keyVault"):
        assert module_params(main, symbol)["networkIsolation"] == "networkIsolation", symbol


@pytest.mark.parametrize("isolated", [True, False])
def test_host_storage_evidence_and_key_vault_close_their_public_endpoints(isolated: bool) -> None:
    expected_access = "Disabled" if isolated else "Enabled"
    expected_action = "Deny" if isolated else "Allow"
    for path, type_ in (
        ("modules/host-storage.bicep", "Microsoft.Storage/storageAccounts"),
        ("modules/evidence-storage.bicep", "Microsoft.Storage/storageAccounts"),
        ("modules/keyvault.bicep", "Microsoft.KeyVault/vaults"),
    ):
        doc = template(path)
        assert param_default(doc, "networkIsolation") is False, path
        config = body(only(resources(doc, type_)))["properties"]
        props = evaluate(config, doc, {"networkIsolation": isolated, "purgeProtection": True})
        assert props["publicNetworkAccess"] == expected_access, path
        assert props["networkAcls"]["defaultAction"] == expected_action, path
    for path in ("modules/host-storage.bicep", "modules/evidence-storage.bicep"):
        doc = template(path)
        props = evaluate(
            body(only(resources(doc, "Microsoft.Storage/storageAccounts")))["properties"],
            doc,
            {"networkIsolation": isolated},
        )
        # Isolated, nothing may come in around the private endpoints, trusted services included.
        assert props["networkAcls"]["bypass"] == ("None" if isolated else "AzureServices"), path


def test_the_export_account_stays_reachable_for_graph() -> None:
    """Graph writes the exports from addresses Microsoft does not publish: closing the account
    would fail every export. docs/security.md records this as an accepted risk."""
    doc = template("modules/export-storage.bicep")
    props = body(only(resources(doc, "Microsoft.Storage/storageAccounts")))["properties"]
    assert props["publicNetworkAccess"] == "Enabled"
    assert props["networkAcls"]["defaultAction"] == "Allow"
    assert "networkIsolation" not in doc["parameters"]
    risks = _section(_security_doc(), "Accepted risks")
    assert "export account" in risks
    assert "Graph" in risks


@pytest.mark.parametrize("backend", BACKENDS)
def test_network_module_has_a_private_endpoint_for_every_data_path(backend: str) -> None:
    """The scheduler (durableBackend=durableTaskScheduler) is a data path of its own: the task
    hub. tests/infra/test_durable_task_scheduler.py checks how main.bicep wires it."""
    doc = template("modules/network.bicep")
    with_scheduler = backend == "durableTaskScheduler"
    given = {"schedulerId": "/subscriptions/x/schedulers/dts" if with_scheduler else ""}
    endpoints = {
        (item["target"], item["groupId"])
        for item in evaluate(doc["variables"]["endpoints"]["value"], doc, given)
    }
    assert endpoints == {
        ("hostStorageId", "blob"),
        ("hostStorageId", "queue"),
        ("hostStorageId", "table"),
        ("exportStorageId", "blob"),
        ("evidenceStorageId", "blob"),
        ("keyVaultId", "vault"),
    } | ({("/subscriptions/x/schedulers/dts", "scheduler")} if with_scheduler else set())
    endpoint = body(only(resources(doc, "Microsoft.Network/privateEndpoints")))
    assert doc["resources"]["endpoint"]["config"]["loop_type"]["detail"]["array_name"] == (
        "endpoints"
    )
    connection = endpoint["properties"]["privateLinkServiceConnections"][0]["properties"]
    assert accessor_path(connection["privateLinkServiceId"]) == ["item", "target"]
    # Each endpoint's address is registered in the DNS zone of its sub-resource, and every
    # zone is linked to the virtual network, so the usual host names resolve privately.
    zones = set(evaluate(doc["variables"]["zones"]["value"], doc, given))
    assert zones == {group for _, group in endpoints}
    assert zones <= set(evaluate(doc["variables"]["zoneNames"]["value"], doc))
    assert resources(doc, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    link = body(only(resources(doc, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")))
    assert link["properties"]["registrationEnabled"] is False
    main = template("main.bicep")
    params = module_params(main, "network")
    for name, module in (
        ("hostStorageId", "hostStorage"),
        ("exportStorageId", "exportStorage"),
        ("evidenceStorageId", "evidenceStorage"),
        ("keyVaultId", "keyVault"),
    ):
        assert accessor_path(params[name]) == [module, "outputs", "id"], name


def test_network_module_subnets() -> None:
    doc = template("modules/network.bicep")
    vnet = body(only(resources(doc, "Microsoft.Network/virtualNetworks")))
    subnets = {s["name"]: s["properties"] for s in vnet["properties"]["subnets"]}
    names = evaluate(list(subnets), doc)
    app, pe = (subnets[n] for n in ("appSubnetName", "privateEndpointSubnetName"))
    assert names == ["snet-app", "snet-pe"]
    # Flex Consumption VNet integration needs this delegation.
    assert [d["properties"]["serviceName"] for d in app["delegations"]] == [
        "Microsoft.App/environments"
    ]
    assert "delegations" not in pe
    for subnet in (app, pe):
        assert accessor_path(subnet["networkSecurityGroup"]["id"]) == ["nsg", "id"]
    main = template("main.bicep")
    assert re.fullmatch(r"10\.\d+\.\d+\.0/(2[0-3]|1\d)", param_default(main, "vnetAddressPrefix"))


@pytest.mark.parametrize("isolated", [True, False])
def test_the_app_is_vnet_integrated_only_when_isolated(isolated: bool) -> None:
    main = template("main.bicep")
    subnet = evaluate(
        module_params(main, "functionApp")["virtualNetworkSubnetId"],
        main,
        {"networkIsolation": isolated},
    )
    if isolated:
        assert accessor_path(subnet) == ["network", "outputs", "appSubnetId"]
    else:
        assert subnet == ""
    doc = template("modules/function-app.bicep")
    site = body(only(resources(doc, "Microsoft.Web/sites")))["properties"]
    given = "/subscriptions/x/subnets/snet-app" if isolated else ""
    value = evaluate(site["virtualNetworkSubnetId"], doc, {"virtualNetworkSubnetId": given})
    assert value == (given if isolated else None)


# ---------------------------------------------------------------------------------------------
# Entra ID in front of the app: App Service authentication and the app's registration


def _auth_settings(client_id: str, audience: str) -> tuple[Any, dict[str, Any]]:
    doc = template("modules/function-app.bicep")
    configs = resources(doc, "Microsoft.Web/sites/config")
    auth = only({k: v for k, v in configs.items() if body(v)["name"] == "authsettingsV2"})
    params = {"authClientId": client_id, "authAudience": audience}
    deployed = evaluate(condition(auth), doc, params)
    return deployed, evaluate(body(auth)["properties"], doc, params)


def test_app_service_authentication_validates_entra_tokens_and_lets_key_holders_through() -> None:
    deployed, props = _auth_settings("11111111-2222-3333-4444-555555555555", "api://t/dsr")
    assert deployed is True
    assert props["platform"]["enabled"] is True
    # Key-only callers (ticketing systems that can send a static header only) must still
    # reach the app, which then demands the function key and grants AUTH_FUNCTION_KEY_ROLES.
    assert props["globalValidation"] == {
        "requireAuthentication": False,
        "unauthenticatedClientAction": "AllowAnonymous",
    }
    assert props["httpSettings"]["requireHttps"] is True
    assert props["login"]["tokenStore"]["enabled"] is False
    assert set(props["identityProviders"]) == {"azureActiveDirectory"}
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "11111111-2222-3333-4444-555555555555"
    assert "clientSecretSettingName" not in aad["registration"], "validation only, no secret"
    assert aad["registration"]["openIdIssuer"] == (
        "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    )
    assert aad["validation"]["allowedAudiences"] == ["api://t/dsr"]


def test_without_a_client_id_there_is_no_app_service_authentication() -> None:
    deployed, _ = _auth_settings("", "")
    assert deployed is False


@pytest.mark.parametrize(
    ("enable", "own_client_id", "created", "client_id"),
    [
        (True, "", True, ["entraApp", "outputs", "appId"]),
        (True, "99999999-8888-7777-6666-555555555555", False, None),
        (False, "", False, ""),
    ],
)
def test_main_wires_the_registration_into_authentication(
    enable: bool, own_client_id: str, created: bool, client_id: Any
) -> None:
    main = template("main.bicep")
    params = {"enableEntraAuth": enable, "entraAppClientId": own_client_id}
    assert evaluate(condition(main["modules"]["entraApp"]), main, params) is created
    wired = evaluate(module_params(main, "functionApp")["authClientId"], main, params)
    if client_id is None:
        assert wired == own_client_id
    elif isinstance(client_id, list):
        assert accessor_path(wired) == client_id
    else:
        assert wired == client_id
    audience = evaluate(module_params(main, "functionApp")["authAudience"], main, params)
    if created:
        assert accessor_path(audience) == ["entraApp", "outputs", "identifierUri"]


def test_entra_auth_is_on_by_default_with_a_tenant_scoped_identifier_uri() -> None:
    main = template("main.bicep")
    assert param_default(main, "enableEntraAuth") is True
    assert _env_default("enableEntraAuth") == "true"
    assert param_default(main, "entraAppClientId") == ""
    uri = main["variables"]["entraIdentifierUri"]["value"]
    # api://<tenant id>/<string>: a format Entra ID accepts under its identifier URI policy.
    assert uri.startswith("api://${tenant().tenantId}/")
    assert module_params(main, "entraApp")["identifierUri"] == "entraIdentifierUri"


def _app_roles() -> list[dict[str, Any]]:
    roles = json.loads((INFRA / "modules" / "app-roles.json").read_text())
    assert isinstance(roles, list)
    return roles


def test_app_roles_are_the_roles_the_code_checks() -> None:
    roles = _app_roles()
    assert sorted(r["value"] for r in roles) == sorted(role.value for role in Role)
    ids = [r["id"] for r in roles]
    assert len(set(ids)) == len(ids)
    for role in roles:
        assert str(uuid.UUID(role["id"])) == role["id"], "a stable, lower-case GUID"
        assert sorted(role["allowedMemberTypes"]) == ["Application", "User"]
        assert role["isEnabled"] is True
        assert role["displayName"]
        assert role["description"]


def test_app_role_ids_never_change() -> None:
    """An assignment points at a role's id: a new id would silently revoke every holder."""
    assert {r["value"]: r["id"] for r in _app_roles()} == {
        "DSR.Submit": "decd5808-3634-4769-b920-f86be0ceca19",
        "DSR.Read": "c6d0c95a-1bfb-4f7b-8b22-a1dd1cd86958",
        "DSR.Manage": "4c843a7f-8312-43a2-8541-f25aa8ca8bc1",
        "DSR.Admin": "21bccf05-32b5-467a-805a-87bfbf8db1dd",
    }


def test_entra_app_module_registers_the_api_with_its_roles() -> None:
    doc = template("modules/entra-app.bicep")
    assert "microsoftGraphV1" in doc["extensions"]
    app = body(only(resources(doc, "Microsoft.Graph/applications")))
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["identifierUris"] == ["identifierUri"]
    assert app["uniqueName"] == "uniqueName"
    roles = doc["variables"]["appRoles"]["value"]["function"]
    assert roles["type"] == "load_json_content"
    assert roles["parameters"]["file_path"] == "app-roles.json"
    assert app["appRoles"] == "appRoles"
    sp = body(only(resources(doc, "Microsoft.Graph/servicePrincipals")))
    assert accessor_path(sp["appId"]) == ["app", "appId"]
    assert sp["appRoleAssignmentRequired"] is True


# ---------------------------------------------------------------------------------------------
# Access restrictions


def _site_config(params: dict[str, Any]) -> dict[str, Any]:
    doc = template("modules/function-app.bicep")
    site = body(only(resources(doc, "Microsoft.Web/sites")))
    config = evaluate(site["properties"]["siteConfig"], doc, params)
    assert isinstance(config, dict)
    return config


def test_access_restrictions_are_off_by_default() -> None:
    main = template("main.bicep")
    assert param_default(main, "appAllowedIpRanges") == ""
    assert _env_default("appAllowedIpRanges") == ""
    ranges = evaluate(
        main["variables"]["allowedIpRanges"]["value"], main, {"appAllowedIpRanges": ""}
    )
    assert ranges == []
    assert module_params(main, "functionApp")["allowedIpRanges"] == "allowedIpRanges"
    config = _site_config({"allowedIpRanges": []})
    assert config["ipSecurityRestrictionsDefaultAction"] == "Allow"


def test_access_restrictions_deny_everything_but_the_listed_ranges() -> None:
    main = template("main.bicep")
    ranges = evaluate(
        main["variables"]["allowedIpRanges"]["value"],
        main,
        {"appAllowedIpRanges": "203.0.113.0/24, 2001:db8::/48,AzureCloud"},
    )
    assert ranges == ["203.0.113.0/24", "2001:db8::/48", "AzureCloud"]
    config = _site_config({"allowedIpRanges": ranges})
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    # The deployment endpoint obeys the same list (no side door past the restrictions).
    assert config["scmIpSecurityRestrictionsUseMain"] is True
    rule = template("modules/function-app.bicep")["variables"]["accessRules"]["value"]
    assert rule["loop_type"]["detail"]["array_name"] == "allowedIpRanges"
    shape = rule["config"]
    assert (shape["action"], shape["ipAddress"]) == ("Allow", "range")
    tag = shape["tag"]["operator"]["operands"]
    assert (tag["true_value"], tag["false_value"]) == ("Default", "ServiceTag")


def test_http2_and_tls_on_the_site() -> None:
    config = _site_config({"allowedIpRanges": []})
    assert config["http20Enabled"] is True
    assert config["minTlsVersion"] == "1.2"


# ---------------------------------------------------------------------------------------------
# Key rotation: which key signs the SAS is a parameter


def test_the_key_in_key_vault_is_chosen_by_a_parameter() -> None:
    main = template("main.bicep")
    assert decorators(main, "exportAccountKeyName")["allowed"] == ["key1", "key2"]
    assert param_default(main, "exportAccountKeyName") == "key1"
    assert _env_var("exportAccountKeyName") == "EXPORT_ACCOUNT_KEY_NAME"
    assert _env_default("exportAccountKeyName") == "key1"
    assert module_params(main, "exportStorage")["accountKeyName"] == "exportAccountKeyName"
    doc = template("modules/export-storage.bicep")
    index = doc["variables"]["accountKeyIndex"]["value"]
    assert evaluate(index, doc, {"accountKeyName": "key1"}) == 0
    assert evaluate(index, doc, {"accountKeyName": "key2"}) == 1
    secret = body(only(resources(doc, "Microsoft.KeyVault/vaults/secrets")))["properties"]
    value = secret["value"]["operator"]["operands"]
    assert accessor_path(value["operand_1"]) == ["storage", "listKeys()"]
    keys = value["operand_2"]["operator"]["operands"]["operand_1"]["operator"]["operands"]
    assert (keys["operand_1"], keys["operand_2"]) == ("keys", "accountKeyIndex")
    # Which key is in use can be read without the value (the rotation procedure does).
    assert secret["contentType"].endswith("${accountKeyName}")


def test_both_secrets_say_what_they_hold() -> None:
    for path in ("modules/keyvault.bicep", "modules/export-storage.bicep"):
        doc = template(path)
        for symbol, secret in resources(doc, "Microsoft.KeyVault/vaults/secrets").items():
            if secret["existing"]:
                continue  # a tenant's callback secret, stored by an operator: only read here
            assert body(secret)["properties"]["contentType"], f"{path}:{symbol}"


# ---------------------------------------------------------------------------------------------
# docs/security.md: accepted risks and the rotation procedure


def _security_doc() -> str:
    return (ROOT / "docs" / "security.md").read_text()


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/security.md has no section '{title}'"
    return match.group(1)


def test_every_accepted_risk_names_the_parameter_that_governs_it() -> None:
    risks = _section(_security_doc(), "Accepted risks")
    main = template("main.bicep")
    for param in (
        "networkIsolation",
        "exportSasMode",
        "functionKeyRoles",
        "appAllowedIpRanges",
        "enableEntraAuth",
        "keyVaultPurgeProtection",
    ):
        assert param in main["parameters"], param
        assert f"`{param}" in risks, f"Accepted risks does not name {param}"


def test_the_rotation_procedure_is_documented_with_its_commands() -> None:
    rotation = _section(_security_doc(), "Rotating the export account key")
    for needle in (
        "az storage account keys renew",
        "--key secondary",
        "--key primary",
        "EXPORT_ACCOUNT_KEY_NAME",
        "export-storage-account-key",
        "EXPORT_STORAGE_ACCOUNT_KEY",
        "phase=exporting",
        "EXPORT_TIMEOUT_DAYS",
        "az functionapp restart",
    ):
        assert needle in rotation, needle
    assert _env_var("exportAccountKeyName") in rotation


@pytest.mark.parametrize("mode", MODES)
def test_user_delegation_mode_has_no_key_to_rotate(mode: str) -> None:
    doc = template("modules/export-storage.bicep")
    secret = only(resources(doc, "Microsoft.KeyVault/vaults/secrets"))
    assert evaluate(condition(secret), doc, {"sasMode": mode}) is (mode == "stored-policy")
