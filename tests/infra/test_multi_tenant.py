"""``tenancy=multi`` in infra/: the multi-tenant app registration and its federated credential.

With ``tenancy=single`` (the default) nothing of it exists. With ``multi`` the deployment creates
(modules/multi-tenant-app.bicep, Microsoft Graph Bicep extension) an app registration that any
organisation's administrator may consent to, asking for Graph's ``User.Export.All`` and
``User.Read.All`` application permissions, whose one credential is a federated identity
credential trusting the app's user-assigned managed identity: issuer the home tenant's v2.0
issuer, subject the identity's principal id, audience ``api://AzureADTokenExchange``, the
audience the app's code asks its identity for. No secret and no certificate anywhere. The app
settings name the registration's client id.

What the REST-model check (test_rest_models.py) adds: every property here exists in the Graph
extension's published types (``infra/rules/msgraph-bicep-types-v1.0-1.0.0``), none read-only.
What neither can see: whether Entra accepts it at deploy time.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dsr_export.adapters.credentials import TOKEN_EXCHANGE_SCOPE
from dsr_export.settings import SETTINGS
from tests.infra.bicep_model import (
    GRAPH_APP_ID,
    GRAPH_APP_ROLES,
    INFRA,
    ROOT,
    Unresolved,
    accessor_path,
    app_settings,
    bicep_files,
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
from tests.infra.test_first_deploy import all_dependencies, direct_dependencies

MODULE = "modules/multi-tenant-app.bicep"
APPLICATION = "Microsoft.Graph/applications"
CREDENTIAL = "Microsoft.Graph/applications/federatedIdentityCredentials"
SERVICE_PRINCIPAL = "Microsoft.Graph/servicePrincipals"
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
BROUGHT = "99999999-8888-4777-8666-555555555555"

#: signInAudience values Microsoft Graph documents for an application. The extension's types
#: describe it as a plain string, so the REST-model check cannot tell a typo from a value.
SIGN_IN_AUDIENCES = {
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
}


def _main_params(tenancy: str, client_id: str = "") -> dict[str, Any]:
    return {"tenancy": tenancy, "multiTenantClientId": client_id}


def _deployed(tenancy: str, client_id: str = "") -> Any:
    main = template("main.bicep")
    return evaluate(
        condition(main["modules"]["multiTenantApp"]), main, _main_params(tenancy, client_id)
    )


def _wired_client_id(tenancy: str, client_id: str = "") -> Any:
    main = template("main.bicep")
    passed = module_params(main, "functionApp")["multiTenantClientId"]
    return evaluate(passed, main, _main_params(tenancy, client_id))


def _env_default(param: str) -> tuple[str, str]:
    match = re.fullmatch(r"\$\{(\w+)=([^}]*)\}", PARAMETERS[param]["value"])
    assert match, f"{param} has no azd default in main.parameters.json"
    return match.group(1), match.group(2)


# ---------------------------------------------------------------------------------------------
# The switch: single by default, nothing created; multi creates the app and its credential


def test_tenancy_is_single_by_default_in_bicep_and_in_azd() -> None:
    main = template("main.bicep")
    assert param_default(main, "tenancy") == "single"
    assert decorators(main, "tenancy")["allowed"] == ["single", "multi"]
    assert _env_default("tenancy") == ("TENANCY", "single")
    assert _env_default("multiTenantClientId") == ("MULTI_TENANT_CLIENT_ID", "")
    assert _env_default("multiTenantAppDisplayName") == ("MULTI_TENANT_APP_DISPLAY_NAME", "")


@pytest.mark.parametrize("client_id", ["", BROUGHT])
def test_single_creates_no_app_and_no_credential(client_id: str) -> None:
    assert _deployed("single", client_id) is False
    # ... and the app setting stays empty even when a client id was left in the environment.
    assert _wired_client_id("single", client_id) == ""


def test_multi_creates_the_app_and_names_it_in_the_app_settings() -> None:
    assert _deployed("multi") is True
    assert accessor_path(_wired_client_id("multi")) == ["multiTenantApp", "outputs", "appId"]
    main = template("main.bicep")
    assert module_file(main, "multiTenantApp") == MODULE
    assert module_params(main, "functionApp")["tenancy"] == "tenancy"
    # The credential's subject is the app's own identity, the one the function app runs as.
    params = module_params(main, "multiTenantApp")
    assert accessor_path(params["identityPrincipalId"]) == ["identity", "outputs", "principalId"]
    assert accessor_path(module_params(main, "functionApp")["identityId"])[0] == "identity"
    # The app setting reads the module's output (through the variable tenancyClientId, which
    # Bicep follows): the function app starts only once the registration exists.
    assert direct_dependencies("multiTenantApp") == {"identity"}


def test_multi_with_a_registration_brought_by_hand_creates_nothing() -> None:
    """Tenants that cannot use the Graph extension create the app and its credential
    themselves (docs/deploy.md) and pass its client id."""
    assert _deployed("multi", BROUGHT) is False
    assert _wired_client_id("multi", BROUGHT) == BROUGHT


def test_the_created_app_is_not_fed_back_as_brought_by_hand() -> None:
    """azd writes every output into the environment, which main.parameters.json reads: an
    output named like a parameter's variable would turn the created app into a brought one on
    the next provision, and the credential would no longer be declared."""
    main = template("main.bicep")
    variable, _ = _env_default("multiTenantClientId")
    assert variable not in main["outputs"]
    assert evaluate(main["outputs"]["TENANCY_APP_ID"]["value"], main, _main_params("single")) == ""


def test_the_app_settings_carry_tenancy_and_the_client_id() -> None:
    settings = app_settings("stored-policy")
    assert settings["TENANCY"] == Unresolved("tenancy")
    assert settings["MULTI_TENANT_CLIENT_ID"] == Unresolved("multiTenantClientId")
    assert settings["TENANCY_OPERATORS"] == Unresolved("tenancyOperators")
    assert {"TENANCY", "MULTI_TENANT_CLIENT_ID", "TENANCY_OPERATORS"} <= set(SETTINGS)
    main = template("main.bicep")
    assert module_params(main, "functionApp")["tenancyOperators"] == "tenancyOperators"
    assert param_default(main, "tenancyOperators") == ""
    assert _env_default("tenancyOperators") == ("TENANCY_OPERATORS", "")


def test_the_multi_tenant_app_does_not_wait_for_the_graph_grants() -> None:
    """Nothing here names the identity's service principal (a federated credential's subject
    is a string Entra compares, not a reference), so it needs no replication delay."""
    assert "graphAppRoles" not in all_dependencies("multiTenantApp")


# ---------------------------------------------------------------------------------------------
# The module: what the registration asks for and what it trusts


def test_the_app_accepts_any_organisation_and_asks_for_the_two_graph_app_roles() -> None:
    doc = template(MODULE)
    assert "microsoftGraphV1" in doc["extensions"]
    app = body(only(resources(doc, APPLICATION)))
    audience = evaluate(app["signInAudience"], doc)
    assert audience == "AzureADMultipleOrgs"
    assert audience in SIGN_IN_AUDIENCES
    (graph,) = evaluate(app["requiredResourceAccess"], doc)
    assert graph["resourceAppId"] == GRAPH_APP_ID
    asked = {(entry["id"], entry["type"]) for entry in graph["resourceAccess"]}
    # Application permissions ("Role"), never delegated ("Scope"): the export runs unattended.
    assert asked == {(role_id, "Role") for role_id in GRAPH_APP_ROLES}
    assert sorted(GRAPH_APP_ROLES.values()) == ["User.Export.All", "User.Read.All"]
    # Where the administrator lands after consenting, if anywhere: never an implicit grant.
    assert evaluate(app["web"], doc, {"redirectUri": ""}) == {"redirectUris": []}
    assert evaluate(app["web"], doc, {"redirectUri": "https://msp.example/thanks"}) == {
        "redirectUris": ["https://msp.example/thanks"]
    }
    main = template("main.bicep")
    assert module_params(main, "multiTenantApp")["redirectUri"] == "multiTenantRedirectUri"
    assert _env_default("multiTenantRedirectUri") == ("MULTI_TENANT_REDIRECT_URI", "")
    # App instance property lock: no credential can be added to its service principals.
    assert evaluate(app["servicePrincipalLockConfiguration"], doc) == {
        "isEnabled": True,
        "allProperties": True,
    }


def test_the_app_trusts_the_managed_identity_as_its_federated_credential() -> None:
    doc = template(MODULE)
    (app_symbol,) = resources(doc, APPLICATION)
    credential = body(only(resources(doc, CREDENTIAL)))
    # '<application uniqueName>/<credential name>': the extension's key for a child credential.
    assert credential["name"] == f"${{{app_symbol}.uniqueName}}/${{credentialName}}"
    assert len(evaluate("credentialName", doc)) <= 120
    # The home tenant's v2.0 issuer, from the deployment's own cloud and tenant: never a
    # hard-coded login host or tenant id.
    assert evaluate(credential["issuer"], doc) == (
        "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    )
    assert credential["subject"] == "identityPrincipalId"
    assert doc["parameters"]["identityPrincipalId"]["type"] == "string"
    # The audience the app's code asks its identity for (credentials.TOKEN_EXCHANGE_SCOPE).
    audiences = evaluate(credential["audiences"], doc)
    assert audiences == ["api://AzureADTokenExchange"]
    assert audiences == [TOKEN_EXCHANGE_SCOPE.removesuffix("/.default")]
    text = (INFRA / MODULE).read_text()
    assert "login.microsoftonline.com/" not in re.sub(r"//.*", "", text)


def test_the_home_tenant_service_principal_is_granted_nothing() -> None:
    """The identity keeps serving the home tenant (graph-app-roles.bicep); the multi-tenant app
    gets its permissions only where a tenant's administrator consents."""
    doc = template(MODULE)
    (app_symbol,) = resources(doc, APPLICATION)
    principal = body(only(resources(doc, SERVICE_PRINCIPAL)))
    assert accessor_path(principal["appId"]) == [app_symbol, "appId"]
    assert resources(doc, "Microsoft.Graph/appRoleAssignedTo") == {}
    assert resources(doc, "Microsoft.Graph/oauth2PermissionGrants") == {}


def test_no_secret_or_certificate_on_any_registration() -> None:
    """Across infra/: no password or key credential on an application or a service principal,
    and no second federated credential (one serves every tenant; an app holds at most 20)."""
    credentials = 0
    for path in bicep_files():
        doc = template(path)
        for symbol, resource in resources(doc).items():
            if resource["type"] in (APPLICATION, SERVICE_PRINCIPAL):
                props = set(body(resource))
                assert not props & {"passwordCredentials", "keyCredentials"}, (path, symbol)
            credentials += resource["type"] == CREDENTIAL
    assert credentials == 1


# ---------------------------------------------------------------------------------------------
# Documented


def test_the_docs_describe_the_switch() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "`tenancy`" in deploy
    assert "multi-tenant-app.bicep" in deploy
    msp = (ROOT / "docs" / "msp.md").read_text()
    for needle in ("consent-link", "User.Export.All", "User.Read.All", "exportsAccount", "20"):
        assert needle in msp, needle
    assert "docs/msp.md" in (ROOT / "README.md").read_text()
