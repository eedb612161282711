"""Code and configuration stay in step: every setting the code reads is provided, in Azure
(infra/ app settings) and locally (local.settings.example.json), and nothing is provided that
nothing reads.

"What the code reads" is ``dsr_export.settings.SETTINGS`` (our code) plus ``PLATFORM_SETTINGS``
(what the Functions host and SDKs read for us). The only exceptions are spelled out below, each
with its reason; everything else is strict in both directions, in every SAS mode and on both
task hub backends (``durableBackend``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dsr_export.settings import PLATFORM_SETTINGS, SETTINGS
from tests.infra.bicep_model import (
    BACKENDS,
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
#: WEBSITE_AUTH_ENABLED: App Service sets it when authentication (authsettingsV2) is on. The app
#: no longer reads it (it validates callers' tokens itself), but an app setting of that name
#: would still claim authentication that may not be there, to whatever reads it.
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

#: Settings that exist only with durableBackend=durableTaskScheduler: the host.json overrides
#: that move the task hub to the scheduler, and the connection string they name. With the
#: default backend they are absent, so host.json's Azure Storage task hub is used. Locally too:
#: the offline host keeps its own durable engine (devhost/durable/), and the scheduler's
#: emulator is a Docker image only.
SCHEDULER_ONLY = {
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName",
    "AzureFunctionsJobHost__extensions__durableTask__hubName",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
}

#: Every (SAS mode, task hub backend) pair infra/ can be deployed with.
COMBINATIONS = [(mode, backend) for mode in MODES for backend in BACKENDS]


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


@pytest.mark.parametrize(("mode", "backend"), COMBINATIONS)
def test_infra_provides_every_setting_the_code_reads(mode: str, backend: str) -> None:
    provided = logical(set(app_settings(mode, backend)))
    required = read_by_app() - SET_BY_FLEX_CONFIG - SET_BY_PLATFORM - OFFLINE_HOST_ONLY
    if mode != "stored-policy":
        required -= STORED_POLICY_ONLY
    if backend != "durableTaskScheduler":
        required -= SCHEDULER_ONLY
    missing = required - provided
    assert not missing, f"{mode}, {backend}: infra/ does not set {sorted(missing)}"


@pytest.mark.parametrize(("mode", "backend"), COMBINATIONS)
def test_infra_provides_nothing_the_code_does_not_read(mode: str, backend: str) -> None:
    provided = logical(set(app_settings(mode, backend)))
    allowed = read_by_app() | set(NOT_YET_IN_REGISTRY)
    extra = provided - allowed
    assert not extra, f"{mode}, {backend}: infra/ sets {sorted(extra)}, which nothing reads"
    assert not provided & SET_BY_FLEX_CONFIG, "Flex Consumption sets these elsewhere"
    assert not provided & SET_BY_PLATFORM, "the platform sets these itself"
    assert not provided & OFFLINE_HOST_ONLY, "never in Azure"
    if mode != "stored-policy":
        assert not provided & STORED_POLICY_ONLY, "no account key outside stored-policy mode"
    if backend != "durableTaskScheduler":
        assert not provided & SCHEDULER_ONLY, "host.json's Azure Storage task hub stays in use"


@pytest.mark.parametrize("mode", MODES)
def test_the_scheduler_adds_exactly_its_own_settings(mode: str) -> None:
    """The backend changes nothing but the scheduler's settings: host storage, telemetry and
    every setting of the code are the same on both."""
    on_storage = app_settings(mode, "azureStorage")
    on_scheduler = app_settings(mode, "durableTaskScheduler")
    assert set(on_scheduler) - set(on_storage) == SCHEDULER_ONLY
    assert set(on_storage) <= set(on_scheduler)
    assert {k: on_scheduler[k] for k in on_storage} == on_storage
    assert set(PLATFORM_SETTINGS) >= SCHEDULER_ONLY, "the registry lists what the host reads"


def test_flex_platform_settings_are_in_function_app_config() -> None:
    """FUNCTIONS_WORKER_RUNTIME is the one PLATFORM_SETTINGS entry not set as an app setting."""
    assert set(PLATFORM_SETTINGS) >= SET_BY_FLEX_CONFIG
    doc = template("modules/function-app.bicep")
    site = body(only(resources(doc, "Microsoft.Web/sites")))
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime["name"] == PLATFORM_SETTINGS["FUNCTIONS_WORKER_RUNTIME"] == "python"


@pytest.mark.parametrize("backend", BACKENDS)
def test_infra_host_storage_is_identity_based(backend: str) -> None:
    """Host storage is kept on both backends: the host, the dsr-requests queue and the
    deployment package need it even when the task hub is on the scheduler."""
    keys = set(app_settings("stored-policy", backend))
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
    required = read_by_app() - LOCAL_OMITS - SET_BY_PLATFORM - OFFLINE_HOST_ONLY - SCHEDULER_ONLY
    missing = required - provided
    assert not missing, f"local.settings.example.json lacks {sorted(missing)}"


def test_local_example_provides_nothing_the_code_does_not_read() -> None:
    provided = logical(set(local_values()))
    extra = provided - read_by_app()
    assert not extra, f"local.settings.example.json sets {sorted(extra)}, which nothing reads"
    assert not provided & LOCAL_OMITS
    assert not provided & (SET_BY_PLATFORM | OFFLINE_HOST_ONLY)
    # Locally the task hub is Azure Storage (Azurite or the account): host.json as it is.
    assert not provided & SCHEDULER_ONLY


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
