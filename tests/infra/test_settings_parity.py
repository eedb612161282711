"""Code and configuration stay in step: every setting the code reads is provided, in Azure
(infra/ app settings) and locally (local.settings.example.json), and nothing is provided that
nothing reads.

"What the code reads" is ``dsr_export.settings.SETTINGS`` (our code) plus ``PLATFORM_SETTINGS``
(what the Functions host and SDKs read for us). The only exceptions are spelled out below, each
with its reason; everything else is strict in both directions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dsr_export.settings import PLATFORM_SETTINGS, SETTINGS
from tests.infra.bicep_model import (
    MODES,
    ROOT,
    Unresolved,
    app_settings,
    body,
    only,
    resources,
    template,
)

LOCAL_EXAMPLE = ROOT / "local.settings.example.json"

#: Identity-based host storage: `AzureWebJobsStorage__<property>` settings make up the one
#: logical setting `AzureWebJobsStorage`.
HOST_STORAGE = "AzureWebJobsStorage"

#: Platform settings Flex Consumption takes from somewhere other than app settings.
#: FUNCTIONS_WORKER_RUNTIME: the language is `functionAppConfig.runtime` (checked below), and
#: Flex rejects it as an app setting.
SET_BY_FLEX_CONFIG = {"FUNCTIONS_WORKER_RUNTIME"}

#: Settings the platform sets when a feature is configured, never as app settings.
#: WEBSITE_AUTH_ENABLED: App Service sets it when authentication (authsettingsV2) is on; an app
#: setting of that name could claim authentication that is not there.
SET_BY_PLATFORM = {"WEBSITE_AUTH_ENABLED"}

#: Settings only the offline host may set: infra must not, and neither may a local copy of
#: Azure's settings. CALLBACK_ALLOW_LOOPBACK_UNSAFE lets callbacks reach loopback receivers.
OFFLINE_HOST_ONLY = {"CALLBACK_ALLOW_LOOPBACK_UNSAFE"}

#: Settings the platform reads that infra must set, but that the registry does not list (yet).
#: APPLICATIONINSIGHTS_AUTHENTICATION_STRING: the Functions host's Application Insights
#: exporter reads it to send telemetry with an Entra token, which the component requires
#: (DisableLocalAuth). It belongs in PLATFORM_SETTINGS; until it is there it is allowed here,
#: and only for infra. (Once the registry lists it, this entry is redundant and can go.)
NOT_YET_IN_REGISTRY = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra-authenticated telemetry (host reads it)",
}

#: Platform settings a local `func start` must not copy from Azure.
#: AZURE_CLIENT_ID: locally the developer's `az login` identity is used, not the app's
#: user-assigned identity (which only exists inside Azure).
#: APPLICATIONINSIGHTS_*: local runs should not send telemetry to production.
LOCAL_OMITS = {
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

#: Settings that are secrets: only placeholders may appear in the example file.
SECRETS = {"EXPORT_STORAGE_ACCOUNT_KEY", "CALLBACK_SIGNING_SECRET"}

#: Setting that exists only in stored-policy mode (the key signs the stored-policy SAS).
STORED_POLICY_ONLY = {"EXPORT_STORAGE_ACCOUNT_KEY"}


def logical(keys: set[str]) -> set[str]:
    """`AzureWebJobsStorage__blobServiceUri` etc. count as `AzureWebJobsStorage`."""
    return {HOST_STORAGE if key.startswith(f"{HOST_STORAGE}__") else key for key in keys}


def read_by_app() -> set[str]:
    return set(SETTINGS) | set(PLATFORM_SETTINGS)


def local_values() -> dict[str, str]:
    data = json.loads(LOCAL_EXAMPLE.read_text())
    assert data["IsEncrypted"] is False
    values = data["Values"]
    assert isinstance(values, dict)
    return values


def host_storage_properties(keys: set[str]) -> set[str]:
    return {key.split("__", 1)[1] for key in keys if key.startswith(f"{HOST_STORAGE}__")}


# ---------------------------------------------------------------------------------------------
# Azure (infra/)


@pytest.mark.parametrize("mode", MODES)
def test_infra_provides_every_setting_the_code_reads(mode: str) -> None:
    provided = logical(set(app_settings(mode)))
    required = read_by_app() - SET_BY_FLEX_CONFIG - SET_BY_PLATFORM - OFFLINE_HOST_ONLY
    if mode != "stored-policy":
        required -= STORED_POLICY_ONLY
    missing = required - provided
    assert not missing, f"{mode}: infra/ does not set {sorted(missing)}"


@pytest.mark.parametrize("mode", MODES)
def test_infra_provides_nothing_the_code_does_not_read(mode: str) -> None:
    provided = logical(set(app_settings(mode)))
    allowed = read_by_app() | set(NOT_YET_IN_REGISTRY)
    extra = provided - allowed
    assert not extra, f"{mode}: infra/ sets {sorted(extra)}, which nothing reads"
    assert not provided & SET_BY_FLEX_CONFIG, "Flex Consumption sets these elsewhere"
    assert not provided & SET_BY_PLATFORM, "the platform sets these itself"
    assert not provided & OFFLINE_HOST_ONLY, "never in Azure"
    if mode != "stored-policy":
        assert not provided & STORED_POLICY_ONLY, "no account key outside stored-policy mode"


def test_flex_platform_settings_are_in_function_app_config() -> None:
    """FUNCTIONS_WORKER_RUNTIME is the one PLATFORM_SETTINGS entry not set as an app setting."""
    assert set(PLATFORM_SETTINGS) >= SET_BY_FLEX_CONFIG
    doc = template("modules/function-app.bicep")
    site = body(only(resources(doc, "Microsoft.Web/sites")))
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime["name"] == PLATFORM_SETTINGS["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_infra_host_storage_is_identity_based() -> None:
    keys = set(app_settings("stored-policy"))
    assert HOST_STORAGE not in keys, "a connection string would need the (disabled) key"
    assert host_storage_properties(keys) == {
        "blobServiceUri",
        "queueServiceUri",
        "tableServiceUri",
        "credential",
        "clientId",
    }


# ---------------------------------------------------------------------------------------------
# Local (local.settings.example.json)


def test_local_example_provides_every_setting_the_code_reads() -> None:
    provided = logical(set(local_values()))
    required = read_by_app() - LOCAL_OMITS - SET_BY_PLATFORM - OFFLINE_HOST_ONLY
    missing = required - provided
    assert not missing, f"local.settings.example.json lacks {sorted(missing)}"


def test_local_example_provides_nothing_the_code_does_not_read() -> None:
    provided = logical(set(local_values()))
    extra = provided - read_by_app()
    assert not extra, f"local.settings.example.json sets {sorted(extra)}, which nothing reads"
    assert not provided & LOCAL_OMITS
    assert not provided & (SET_BY_PLATFORM | OFFLINE_HOST_ONLY)


def test_local_example_uses_the_developer_identity_for_host_storage() -> None:
    values = local_values()
    assert HOST_STORAGE not in values
    # No credential/clientId: locally the host falls back to the developer's credentials.
    assert host_storage_properties(set(values)) == {
        "blobServiceUri",
        "queueServiceUri",
        "tableServiceUri",
    }
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_local_example_holds_no_secrets() -> None:
    values = local_values()
    for name in SECRETS:
        assert re.fullmatch(r"<[^<>]*(<[^<>]*>[^<>]*)*>", values[name]), f"{name} not a placeholder"
    text = LOCAL_EXAMPLE.read_text()
    assert "AccountKey=" not in text
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{20,}", text)


def test_local_example_values_match_infra_where_fixed() -> None:
    """Values that are constants in infra/ are the same constants locally."""
    infra: dict[str, Any] = app_settings("stored-policy")
    local = local_values()
    fixed = {
        key
        for key, value in infra.items()
        if key in SETTINGS
        and isinstance(value, str)
        and not isinstance(value, Unresolved)
        and re.fullmatch(r"[\w.\-]+", value)
    }
    assert fixed, "expected some constant settings in infra/"
    for key in fixed:
        assert local[key] == infra[key], key
    assert local["EXPORT_SAS_MODE"] in MODES
