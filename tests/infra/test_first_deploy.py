"""The first `azd up` must not depend on Entra ID or ARM replicating faster than the deployment.

Two steps of infra/main.bicep name an object created moments earlier in the same deployment:
the Graph app-role grants name the app identity's service principal (Entra ID answers "Not a
valid reference update" until it has replicated: microsoftgraph/msgraph-bicep-types #193), and
the evidence account's role assignment names a custom role definition (ARM answers
"RoleDefinitionDoesNotExist" until it has replicated). Both are ordered so that minutes of
other work lie between creating the object and naming it; docs/deploy.md ("What Azure can
refuse and why") says why that is enough and what to do if a region is slower still.

ARM orders modules by what they reference: a module that reads another's outputs, or lists it
in dependsOn, starts after it has finished.
"""

from __future__ import annotations

import re
from typing import Any

from tests.infra.bicep_model import ROOT, accessor_path, body, template


def _references(node: Any) -> set[str]:
    """Modules an expression reads outputs of (``x.outputs.y``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        path = accessor_path(node)
        if len(path) >= 2 and path[1] == "outputs":
            found.add(path[0])
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def direct_dependencies(symbol: str) -> set[str]:
    main = template("main.bicep")
    module = main["modules"][symbol]
    config = body(module)
    modules = set(main["modules"])
    depends = {d for d in config.get("dependsOn", []) if isinstance(d, str)}
    return (_references(config.get("params", {})) | depends) & modules


def all_dependencies(symbol: str) -> set[str]:
    seen: set[str] = set()
    todo = [symbol]
    while todo:
        for dependency in direct_dependencies(todo.pop()):
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_the_identity_and_the_custom_role_are_created_first() -> None:
    assert direct_dependencies("identity") == set()
    assert direct_dependencies("evidenceRole") == set()


def test_the_custom_role_is_assigned_after_the_workspace_and_the_account_exist() -> None:
    """evidence-storage (which assigns the role) waits for monitoring, whose workspace takes
    a minute or more: the definition, created at the start, has replicated by then."""
    dependencies = direct_dependencies("evidenceStorage")
    assert {"evidenceRole", "monitoring", "identity"} <= dependencies
    # ... and the app is created only once its grant on the evidence container exists.
    assert "evidenceStorage" in all_dependencies("functionApp")


def test_the_receipt_signer_role_is_created_first_and_assigned_after_the_workspace() -> None:
    """The same for the receipt key: keyvault (which assigns the role on the key) waits for
    monitoring; the app waits for keyvault (it reads the key's id)."""
    assert direct_dependencies("receiptSignerRole") == set()
    assert {"receiptSignerRole", "monitoring", "identity"} <= direct_dependencies("keyVault")
    assert "keyVault" in all_dependencies("functionApp")


def test_the_graph_grants_come_last() -> None:
    """The grants wait for everything the function app waits for: minutes after the identity
    exists. Nothing waits for them (the app needs them only once `azd deploy` has run)."""
    assert "functionApp" in direct_dependencies("graphAppRoles")
    assert all_dependencies("functionApp") | {"functionApp"} <= all_dependencies("graphAppRoles")
    assert {"identity", "monitoring", "hostStorage", "keyVault", "evidenceStorage"} <= (
        all_dependencies("graphAppRoles")
    )
    main = template("main.bicep")
    waiting = {
        symbol for symbol in main["modules"] if "graphAppRoles" in direct_dependencies(symbol)
    }
    assert waiting == set()
    assert not any("graphAppRoles" in str(o["value"]) for o in main["outputs"].values())


def test_the_deploy_guide_names_each_rule_its_source_and_its_guard() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    start = text.index("## What Azure can refuse and why")
    section = text[start : text.index("\n## ", start + 1)]
    for source in (
        "#flex-consumption-plan-deprecations",
        "msgraph-bicep-types/issues/193",
        "bicep-types-az/issues/1317",
        "azure-dev/pull/5383",
        "deployment-modes",
    ):
        assert source in section, source
    for guard in (
        "tests/infra/test_flex_consumption.py",
        "tests/infra/test_rest_models.py",
        "tests/infra/test_first_deploy.py",
        "tests/infra/test_deployment_package.py",
        "infra/rules/flex-consumption-refused.toml",
        "infra/rules/rest-models.toml",
        "infra/checkov-skips.toml",
    ):
        assert guard in section, guard
    # Every file the section names exists.
    for path in re.findall(r"`((?:tests|infra)/[\w./-]+?)(?:::\w+)?`", section):
        assert (ROOT / path).exists(), path
