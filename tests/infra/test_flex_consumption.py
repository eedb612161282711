"""What the Flex Consumption plan refuses never reaches Azure: no refused site property,
siteConfig property or app setting, in any parameter combination.

The refused names are Microsoft's "Flex Consumption plan deprecations" table, kept with its
source in infra/rules/flex-consumption-refused.toml. ARM answers a refused name with 400
BadRequest ("The following site configuration property (Site.SiteConfig.FtpsState) for Flex
Consumption sites is invalid"), but only on the regional stamps that enforce it yet: a deploy
that works in one region is refused in another. A schema cannot say this (the REST model of
Microsoft.Web/sites has every one of these properties), so this test does.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_model import (
    BACKENDS,
    INFRA,
    MODES,
    Unresolved,
    body,
    condition,
    evaluate,
    module_params,
    resources,
    template,
)

RULES = INFRA / "rules" / "flex-consumption-refused.toml"
FUNCTION_APP = "modules/function-app.bicep"
SUBNET_ID = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
)


def load_rules() -> dict[str, Any]:
    return tomllib.loads(RULES.read_text())


def refused_names() -> tuple[dict[str, str], dict[str, str]]:
    """(app settings, site properties): casefolded name -> the table's spelling."""
    rules = load_rules()
    settings = {row["name"].casefold(): row["name"] for row in rules["app_setting"]}
    properties = {
        spelling.casefold(): row["name"]
        for row in rules["site_property"]
        for spelling in row.get("names", [row["name"]])
    }
    return settings, properties


def combinations() -> Iterator[dict[str, Any]]:
    """Every combination of the parameters that change the app's configuration: SAS mode, task
    hub backend, network isolation (main.bicep hands the module a subnet id or ''), Entra
    authentication (a client id or '')."""
    for mode, backend, isolated, entra in itertools.product(
        MODES, BACKENDS, (False, True), (False, True)
    ):
        yield {
            "sasMode": mode,
            "durableBackend": backend,
            "virtualNetworkSubnetId": SUBNET_ID if isolated else "",
            "authClientId": "00000000-0000-0000-0000-000000000001" if entra else "",
            "authAudience": "api://x" if entra else "",
        }


def _deployed(
    doc: Mapping[str, Any], resource: Mapping[str, Any], params: Mapping[str, Any]
) -> bool:
    """Whether a resource is deployed with these parameters (unresolved counts as deployed)."""
    return evaluate(condition(resource), doc, params) is not False


def _keys(value: Any) -> set[str]:
    return {str(k) for k in value} if isinstance(value, dict) else set()


def configured_names(path: str, params: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(app setting names, site and siteConfig property names) a template gives the function
    app with these parameters."""
    doc = template(path)
    settings: set[str] = set()
    properties: set[str] = set()
    for resource in resources(doc, "Microsoft.Web/sites").values():
        if not _deployed(doc, resource, params):
            continue
        props = evaluate(body(resource).get("properties", {}), doc, params)
        properties |= _keys(props)
        site_config = props.get("siteConfig", {}) if isinstance(props, dict) else {}
        properties |= _keys(site_config)
        inline = site_config.get("appSettings", []) if isinstance(site_config, dict) else []
        if isinstance(inline, list):
            settings |= {str(item["name"]) for item in inline if isinstance(item, dict)}
    for resource in resources(doc, "Microsoft.Web/sites/config").values():
        if not _deployed(doc, resource, params):
            continue
        name = evaluate(body(resource)["name"], doc, params)
        props = evaluate(body(resource).get("properties", {}), doc, params)
        if name == "appsettings" or isinstance(name, Unresolved):
            settings |= _keys(props)
        if name == "web" or isinstance(name, Unresolved):
            properties |= _keys(props)
    return settings, properties


def refused_in(path: str, params: Mapping[str, Any]) -> list[str]:
    """Every refused name a template sets with these parameters, compared as ARM does (case
    folded), each with the table's spelling."""
    refused_settings, refused_properties = refused_names()
    settings, properties = configured_names(path, params)
    found = [
        f"app setting {name} ({refused_settings[name.casefold()]})"
        for name in sorted(settings)
        if name.casefold() in refused_settings
    ]
    found += [
        f"site property {name} ({refused_properties[name.casefold()]})"
        for name in sorted(properties)
        if name.casefold() in refused_properties
    ]
    return found


# ---------------------------------------------------------------------------------------------
# The table itself


def test_the_table_is_whole_and_every_row_has_its_reason_and_source() -> None:
    rules = load_rules()
    sources = rules["sources"]
    assert sources["deprecations"]["url"].endswith("#flex-consumption-plan-deprecations")
    rows = rules["app_setting"] + rules["site_property"]
    # The table as read (ms.date 12/22/2025): 17 app settings, 18 site properties.
    assert (len(rules["app_setting"]), len(rules["site_property"])) == (17, 18)
    names = [row["name"].casefold() for row in rows]
    assert len(names) == len(set(names)), "a row twice"
    for row in rows:
        assert row["reason"].strip(), row["name"]
        assert row["sources"], row["name"]
        assert set(row["sources"]) <= set(sources), row["name"]
    # The rows ARM is seen refusing, with its own words.
    for name in ("ftpsState", "LinuxFxVersion", "FUNCTIONS_WORKER_RUNTIME"):
        row = next(r for r in rows if r["name"] == name)
        assert any(sources[s].get("quote") for s in row["sources"]), name


# ---------------------------------------------------------------------------------------------
# The Bicep


def test_main_hands_the_app_a_subnet_only_with_network_isolation() -> None:
    """The combinations below stand for main.bicep's networkIsolation through this param."""
    main = template("main.bicep")
    subnet = module_params(main, "functionApp")["virtualNetworkSubnetId"]
    assert evaluate(subnet, main, {"networkIsolation": False}) == ""
    assert evaluate(subnet, main, {"networkIsolation": True}) != ""


def _id(params: Mapping[str, Any]) -> str:
    isolated = "isolated" if params["virtualNetworkSubnetId"] else "public"
    entra = "entra" if params["authClientId"] else "keys"
    return f"{params['sasMode']}-{params['durableBackend']}-{isolated}-{entra}"


@pytest.mark.parametrize("params", list(combinations()), ids=_id)
def test_no_refused_property_or_setting_in_any_combination(params: dict[str, Any]) -> None:
    assert refused_in(FUNCTION_APP, params) == []


def test_the_app_is_configured_where_flex_consumption_wants_it() -> None:
    """Runtime, scale and deployment in functionAppConfig, not in settings or siteConfig."""
    doc = template(FUNCTION_APP)
    site = body(next(iter(resources(doc, "Microsoft.Web/sites").values())))
    config = site["properties"]["functionAppConfig"]
    assert set(config) >= {"runtime", "scaleAndConcurrency", "deployment"}


def test_a_planted_refused_name_fails_in_the_combinations_that_set_it(tmp_path: Path) -> None:
    """The check sees a refused siteConfig property, one spelt in another case, and an app
    setting set only in one SAS mode."""
    text = (INFRA / FUNCTION_APP).read_text()
    planted = text.replace(
        "      minTlsVersion: '1.2'\n",
        "      minTlsVersion: '1.2'\n"
        "      ftpsState: 'Disabled'\n"
        "      linuxfxversion: 'Python|3.11'\n",
        1,
    ).replace(
        "var storedPolicySettings = {\n",
        "var storedPolicySettings = {\n  FUNCTIONS_WORKER_RUNTIME: 'python'\n",
        1,
    )
    assert planted.count("ftpsState: 'Disabled'") == 1
    assert "FUNCTIONS_WORKER_RUNTIME: 'python'" in planted
    copy = tmp_path / "function-app.bicep"
    copy.write_text(planted)
    stored, delegated = (
        {**next(combinations()), "sasMode": mode} for mode in ("stored-policy", "user-delegation")
    )
    assert refused_in(str(copy), stored) == [
        "app setting FUNCTIONS_WORKER_RUNTIME (FUNCTIONS_WORKER_RUNTIME)",
        "site property ftpsState (ftpsState)",
        "site property linuxfxversion (LinuxFxVersion)",
    ]
    assert refused_in(str(copy), delegated) == [
        "site property ftpsState (ftpsState)",
        "site property linuxfxversion (LinuxFxVersion)",
    ]
