"""The evidence account (infra/modules/evidence-storage.bicep) and the retention settings.

The DSR evidence logs (dsr_export/adapters/evidence_log.py) must outlive the exports and stay as
written: they live in an account of their own with version-level immutability, no shared key and
no lifecycle rule, and the app's identity holds a custom role that can read and append, nothing
more. Read through :mod:`tests.infra.bicep_model`; what only Azure can tell (that it accepts these
property values, how a Locked policy behaves) is listed in docs/security.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dsr_export.adapters.evidence_log import EVIDENCE_CONTAINER
from tests.infra.bicep_model import (
    INFRA,
    MODES,
    ROLE_ASSIGNMENT,
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
    template,
)

EVIDENCE = "modules/evidence-storage.bicep"
EVIDENCE_ROLE = "modules/evidence-role.bicep"
EXPORT = "modules/export-storage.bicep"
ACCOUNT = "Microsoft.Storage/storageAccounts"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
ROLE_DEFINITION = "Microsoft.Authorization/roleDefinitions"
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
#: Six years, in whole days (2192 covers any six calendar years, leap days included).
SIX_YEARS = 2192

BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


def _doc() -> dict[str, Any]:
    return template(EVIDENCE)


def _account(params: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = _doc()
    return dict(evaluate(body(only(resources(doc, ACCOUNT))), doc, params or {}))


def _env_default(param: str) -> str:
    match = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", PARAMETERS[param]["value"])
    assert match, f"{param} has no azd default in main.parameters.json"
    return match.group(2)


def _role() -> dict[str, Any]:
    doc = template(EVIDENCE_ROLE)
    definition = body(only(resources(doc, ROLE_DEFINITION)))
    return dict(evaluate(definition["properties"], doc))


def _permissions() -> tuple[set[str], set[str]]:
    """(actions, dataActions) of the custom role, after checking it has one permission block
    with nothing subtracted (notActions only narrow a wildcard, and there is none)."""
    permissions = _role()["permissions"]
    assert len(permissions) == 1
    permission = permissions[0]
    assert permission["notActions"] == []
    assert permission["notDataActions"] == []
    return set(permission["actions"]), set(permission["dataActions"])


# ---------------------------------------------------------------------------------------------
# Wiring: its own account, its own module


def test_main_deploys_the_evidence_account_as_its_own_module() -> None:
    main = template("main.bicep")
    assert module_file(main, "evidenceStorage") == EVIDENCE
    assert condition(main["modules"]["evidenceStorage"]) is True
    params = module_params(main, "evidenceStorage")
    assert params["name"] != module_params(main, "exportStorage")["name"]
    assert accessor_path(params["appPrincipalId"]) == ["identity", "outputs", "principalId"]
    assert params["retentionDays"] == "evidenceRetentionDays"
    assert params["lockRetentionPolicy"] == "evidenceImmutabilityLocked"
    assert params["networkIsolation"] == "networkIsolation"
    assert main["outputs"]["EVIDENCE_STORAGE_ACCOUNT_NAME"]


def test_the_evidence_container_is_not_in_the_export_account() -> None:
    """The export account's lifecycle rule deletes everything in it (no prefix filter): the
    logs must not be there, and nothing in infra may create them there."""
    export = template(EXPORT)
    assert not resources(export, CONTAINER), "the export account's containers are the app's"
    assert EVIDENCE_CONTAINER not in (INFRA / EXPORT).read_text()
    container = body(only(resources(_doc(), CONTAINER)))
    assert container["name"] == "containerName"
    assert param_default(_doc(), "containerName") == EVIDENCE_CONTAINER
    assert "containerName" not in module_params(template("main.bicep"), "evidenceStorage")
    assert container["properties"]["publicAccess"] == "None"


def test_the_app_is_told_where_the_evidence_account_is() -> None:
    for mode in MODES:
        assert app_settings(mode)["EVIDENCE_STORAGE_BLOB_ENDPOINT"] == "evidenceBlobEndpoint"
    main = template("main.bicep")
    endpoint = module_params(main, "functionApp")["evidenceBlobEndpoint"]
    assert accessor_path(endpoint) == ["evidenceStorage", "outputs", "blobEndpoint"]
    output = _doc()["outputs"]["blobEndpoint"]["value"]
    assert accessor_path(output) == ["storage", "properties", "primaryEndpoints", "blob"]


# ---------------------------------------------------------------------------------------------
# The account: identity only, HTTPS, nothing public, no lifecycle rule


def test_the_evidence_account_is_identity_only_https_tls12_private() -> None:
    account = _account({"networkIsolation": False})
    assert account["kind"] == "StorageV2"
    assert not str(param_default(_doc(), "skuName")).startswith("Premium"), "append blobs"
    assert all(sku.startswith("Standard_") for sku in decorators(_doc(), "skuName")["allowed"])
    props = account["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["allowCrossTenantReplication"] is False


def test_the_evidence_account_has_no_lifecycle_rule() -> None:
    assert not resources(_doc(), "Microsoft.Storage/storageAccounts/managementPolicies")


def test_versioning_and_soft_delete_are_on() -> None:
    doc = _doc()
    service = body(only(resources(doc, "Microsoft.Storage/storageAccounts/blobServices")))
    props = service["properties"]
    assert props["isVersioningEnabled"] is True, "version-level immutability needs versioning"
    assert props["deleteRetentionPolicy"] == {
        "enabled": True,
        "days": "softDeleteDays",
        "allowPermanentDelete": False,
    }
    assert props["containerDeleteRetentionPolicy"] == {"enabled": True, "days": "softDeleteDays"}
    assert decorators(doc, "softDeleteDays")["min_value"] >= 1


# ---------------------------------------------------------------------------------------------
# Version-level immutability with a time-based retention policy


@pytest.mark.parametrize("locked", [False, True])
def test_version_level_immutability_with_protected_appends(locked: bool) -> None:
    account = _account({"lockRetentionPolicy": locked, "networkIsolation": False})
    immutability = account["properties"]["immutableStorageWithVersioning"]
    assert immutability["enabled"] is True
    policy = immutability["immutabilityPolicy"]
    # The logs are append blobs: without this, the second record could not be written.
    assert policy["allowProtectedAppendWrites"] is True
    assert policy["immutabilityPeriodSinceCreationInDays"] == "retentionDays"
    assert policy["state"] == ("Locked" if locked else "Unlocked")
    assert "allowProtectedAppendWritesAll" not in policy, "append blobs only, not block blobs"
    container = body(only(resources(_doc(), CONTAINER)))["properties"]
    assert container["immutableStorageWithVersioning"] == {"enabled": True}


def test_retention_is_a_parameter_of_six_years_by_default_and_unlocked() -> None:
    main = template("main.bicep")
    doc = _doc()
    for template_, name in ((main, "evidenceRetentionDays"), (doc, "retentionDays")):
        assert param_default(template_, name) == SIX_YEARS, name
        assert decorators(template_, name)["min_value"] >= 1
        # The service's limit for a time-based retention policy: 146,000 days (400 years).
        assert decorators(template_, name)["max_value"] == 146000
    assert SIX_YEARS >= 6 * 365.25
    assert _env_default("evidenceRetentionDays") == str(SIX_YEARS)
    # Unlocked unless asked: a policy cannot be created Locked, and Locked is forever.
    assert param_default(main, "evidenceImmutabilityLocked") is False
    assert param_default(doc, "lockRetentionPolicy") is False
    assert _env_default("evidenceImmutabilityLocked") == "false"


# ---------------------------------------------------------------------------------------------
# The app's role: read and append, no overwrite, no delete, no policy or hold


def test_the_custom_role_can_read_and_append_only() -> None:
    actions, data_actions = _permissions()
    assert actions == {"Microsoft.Storage/storageAccounts/blobServices/containers/read"}
    assert data_actions == {f"{BLOBS}/read", f"{BLOBS}/add/action"}
    everything = actions | data_actions
    for forbidden in (
        "delete",  # blobs, versions, containers
        "deleteBlobVersion",
        "permanentDelete",
        "/blobs/write",  # overwrite (a new current version), metadata, tier, leases
        "immutableStorage",  # set or delete a blob's immutability policy or legal hold
        "immutabilityPolicies",
        "LegalHold",
        "runAsSuperUser",
        "containers/write",
        "*",
    ):
        assert not any(forbidden in action for action in everything), forbidden
    role = _role()
    assert role["type"] == "CustomRole"
    assert role["roleName"]


def test_the_custom_role_is_assignable_in_the_resource_group_only() -> None:
    (scope,) = _role()["assignableScopes"]
    assert accessor_path(scope)[-1] == "id"
    assert scope["operator"]["operands"]["operand_1"]["function"]["type"] == "resource_group"


def test_the_custom_role_is_assigned_to_the_app_identity_on_the_container() -> None:
    doc = _doc()
    assert not resources(doc, ROLE_DEFINITION), "the role is defined in evidence-role.bicep"
    (name, assignment), *others = resources(doc, ROLE_ASSIGNMENT).items()
    assert not others, "the app gets exactly one grant on the evidence account"
    assert condition(assignment) is True
    config = body(assignment)
    assert resources(doc)[config["scope"]]["type"] == CONTAINER, name
    props = config["properties"]
    assert props["roleDefinitionId"] == "appenderRoleId"
    assert props["principalId"] == "appPrincipalId"
    assert props["principalType"] == "ServicePrincipal"
    # The role evidence-role.bicep defines, for this account.
    main = template("main.bicep")
    params = module_params(main, "evidenceStorage")
    assert accessor_path(params["appenderRoleId"]) == ["evidenceRole", "outputs", "id"]
    role = template(EVIDENCE_ROLE)
    symbol = only({s: s for s in resources(role, ROLE_DEFINITION)})
    assert accessor_path(role["outputs"]["id"]["value"]) == [symbol, "id"]
    assert module_params(main, "evidenceRole")["storageAccountName"] == params["name"]


def test_the_custom_role_keeps_its_id_and_assignment_name() -> None:
    """Moving the definition out of evidence-storage.bicep must not rename it: a new name would
    be a second role with the same roleName (refused), and a new assignment name a second
    assignment of the same role (RoleAssignmentExists)."""
    role = template(EVIDENCE_ROLE)
    name = body(only(resources(role, ROLE_DEFINITION)))["name"]["function"]
    assert name["type"] == "guid"
    base = name["parameters"]["base_string"]["function"]
    assert base["type"] == "resource_id"
    assert base["parameters"]["resource_type"] == "Microsoft.Storage/storageAccounts"
    assert base["parameters"]["resource_name_1"] == "storageAccountName"
    assert name["parameters"]["extra_string_1"] == "dsr-evidence-appender"
    assignment = body(only(resources(_doc(), ROLE_ASSIGNMENT)))["name"]["function"]
    assert assignment["type"] == "guid"
    assert list(assignment["parameters"].values())[2] == "appenderRoleId"


# ---------------------------------------------------------------------------------------------
# Retention: the app deletes, the lifecycle rule is a later backstop


@pytest.mark.parametrize("mode", MODES)
def test_app_settings_carry_the_retention_and_lifecycle_settings(mode: str) -> None:
    settings = app_settings(mode)
    main = template("main.bicep")
    app = module_params(main, "functionApp")
    for setting, param in (
        ("EXPORT_RETENTION_DAYS", "exportRetentionDays"),
        ("HISTORY_RETENTION_DAYS", "historyRetentionDays"),
        ("QUEUE_RETENTION_DAYS", "queueRetentionDays"),
        ("DOWNLOAD_LINK_MINUTES", "downloadLinkMinutes"),
        ("CUSTOM_EXTENSION_MAX_DAYS", "customExtensionMaxDays"),
    ):
        value = settings[setting]["function"]
        assert value["type"] == "string", setting
        assert value["parameters"]["value_to_convert"] == param, setting
        assert app[param] == param, f"main.bicep passes {param} through"


def test_retention_parameters_and_their_defaults() -> None:
    main = template("main.bicep")
    expected = {
        "exportRetentionDays": 30,
        "historyRetentionDays": 90,
        "queueRetentionDays": 3,
        "downloadLinkMinutes": 60,
        "customExtensionMaxDays": 0,
        "exportBackstopMarginDays": 14,
    }
    for name, default in expected.items():
        assert param_default(main, name) == default, name
        assert _env_default(name) == str(default), name
    assert decorators(main, "downloadLinkMinutes")["max_value"] == 1440
    assert decorators(main, "queueRetentionDays")["max_value"] == 30, "the rejected records' TTL"
    # The history finds the data to delete: it must not be purged first.
    assert expected["historyRetentionDays"] >= expected["exportRetentionDays"]


def test_every_value_the_bicep_allows_the_app_accepts() -> None:
    """A deployment that succeeds must not give the app settings it refuses at start."""
    settings = pytest.importorskip("dsr_export.settings")
    lifecycle = getattr(settings, "LifecycleSettings", None)
    if lifecycle is None:
        pytest.skip("dsr_export.settings has no LifecycleSettings yet")
    main = template("main.bicep")
    names = {
        "EXPORT_RETENTION_DAYS": "exportRetentionDays",
        "HISTORY_RETENTION_DAYS": "historyRetentionDays",
        "QUEUE_RETENTION_DAYS": "queueRetentionDays",
        "DOWNLOAD_LINK_MINUTES": "downloadLinkMinutes",
        "CUSTOM_EXTENSION_MAX_DAYS": "customExtensionMaxDays",
    }
    for bound in ("min_value", "max_value"):
        env = {setting: str(decorators(main, p)[bound]) for setting, p in names.items()}
        # The app also requires history >= export retention; both at the same bound holds.
        lifecycle.from_env(env)
    defaults = {setting: str(param_default(main, p)) for setting, p in names.items()}
    lifecycle.from_env(defaults)


# ---------------------------------------------------------------------------------------------
# docs/security.md says who can do what


def _section(title: str) -> str:
    text = (ROOT / "docs" / "security.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/security.md has no section '{title}'"
    return match.group(1)


def test_security_doc_explains_who_can_do_what_to_the_evidence_log() -> None:
    section = _section("The evidence log: who can do what")
    for needle in (
        "Unlocked",
        "Locked",
        "legal hold",
        "Owner",
        "irreversible",
        "extend",
        "evidenceImmutabilityLocked",
        "evidenceRetentionDays",
        "az storage account update",
        "--immutability-state Locked",
        "blobs/add/action",
        "blobs/write",
        "allowProtectedAppendWrites",
        "azd down",
    ):
        assert needle in section, needle
