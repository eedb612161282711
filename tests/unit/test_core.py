"""Settings, request model, redaction, job state and status documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dsr_export.domain.job import ExportJob, ExportPolicy
from dsr_export.domain.pacing import poll_wait
from dsr_export.domain.redaction import redact
from dsr_export.domain.request import (
    ExportRequest,
    InvalidRequest,
    container_name,
    validate_request_id,
)
from dsr_export.domain.status import status_document
from dsr_export.settings import (
    SETTINGS,
    EntraSettings,
    ExportStorageSettings,
    GraphSettings,
    LifecycleSettings,
    SasMode,
    SettingsError,
    export_policy_from_env,
)

ENDPOINT = "https://exportacct.blob.core.windows.net"


def test_graph_settings_default_to_the_global_cloud_beta():
    settings = GraphSettings.from_env({})
    assert (settings.base_url, settings.api_version) == ("https://graph.microsoft.com", "beta")


def test_national_cloud_is_a_setting():
    settings = GraphSettings.from_env({"GRAPH_BASE_URL": "https://graph.microsoft.us/"})
    assert settings.base_url == "https://graph.microsoft.us"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"GRAPH_BASE_URL": "http://graph.microsoft.com"}, "GRAPH_BASE_URL"),
        ({"GRAPH_API_VERSION": "v2"}, "GRAPH_API_VERSION"),
        ({"GRAPH_TIMEOUT_SECONDS": "soon"}, "GRAPH_TIMEOUT_SECONDS"),
    ],
)
def test_invalid_graph_settings_name_the_setting(env, setting):
    with pytest.raises(SettingsError) as caught:
        GraphSettings.from_env(env)
    assert caught.value.setting == setting
    assert setting in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.microsoft.com\\@evil.example",
        "https://graph.microsoft.com@evil.example",
        "https://user:pw@graph.microsoft.com",
        "https://graph.microsoft.com\t.evil.example",
        "https://graph\u200b.microsoft.com",
    ],
)
def test_a_token_destination_parsers_read_differently_stops_the_start(url):
    """The review campaign's URL-setting shapes (tests/e2e/review_probes.py): the settings read
    one host, the sender another or none, so the host started and refused every call."""
    with pytest.raises(SettingsError) as caught:
        GraphSettings.from_env({"GRAPH_BASE_URL": url})
    assert caught.value.setting == "GRAPH_BASE_URL"
    guid = "00000000-0000-0000-0000-00000000000a"
    entra = {"AUTH_CLIENT_ID": guid, "AUTH_TENANT_ID": guid, "AUTH_AUTHORITY_HOST": url}
    with pytest.raises(SettingsError) as caught:
        EntraSettings.from_env(entra)
    assert caught.value.setting == "AUTH_AUTHORITY_HOST"


def test_stored_policy_needs_the_account_key():
    with pytest.raises(SettingsError) as caught:
        ExportStorageSettings.from_env({"EXPORT_STORAGE_BLOB_ENDPOINT": ENDPOINT})
    assert caught.value.setting == "EXPORT_STORAGE_ACCOUNT_KEY"


def test_missing_endpoint_is_named():
    with pytest.raises(SettingsError) as caught:
        ExportStorageSettings.from_env({"EXPORT_SAS_MODE": "user-delegation"})
    assert caught.value.setting == "EXPORT_STORAGE_BLOB_ENDPOINT"


def test_user_delegation_lifetime_over_seven_days_is_refused():
    env = {
        "EXPORT_STORAGE_BLOB_ENDPOINT": ENDPOINT,
        "EXPORT_SAS_MODE": "user-delegation",
        "EXPORT_SAS_LIFETIME_DAYS": "30",
    }
    with pytest.raises(SettingsError) as caught:
        ExportStorageSettings.from_env(env)
    assert caught.value.setting == "EXPORT_SAS_LIFETIME_DAYS"


def test_unresolved_key_vault_reference_is_refused():
    env = {
        "EXPORT_STORAGE_BLOB_ENDPOINT": ENDPOINT,
        "EXPORT_STORAGE_ACCOUNT_KEY": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/k)",
    }
    with pytest.raises(SettingsError) as caught:
        ExportStorageSettings.from_env(env)
    assert caught.value.setting == "EXPORT_STORAGE_ACCOUNT_KEY"
    assert "Key Vault" in str(caught.value)


def test_storage_settings_hide_the_key_and_derive_the_account():
    settings = ExportStorageSettings.from_env(
        {"EXPORT_STORAGE_BLOB_ENDPOINT": ENDPOINT, "EXPORT_STORAGE_ACCOUNT_KEY": "s3cr3t=="}
    )
    assert settings.sas_mode is SasMode.STORED_POLICY
    assert settings.sas_lifetime == timedelta(days=60)
    assert settings.account_name == "exportacct"
    assert "s3cr3t" not in repr(settings)
    emulator = ExportStorageSettings(
        "https://127.0.0.1:10000/devstoreaccount1", SasMode.USER_DELEGATION, timedelta(days=7)
    )
    assert emulator.account_name == "devstoreaccount1"


def test_policy_bounds_are_checked():
    assert export_policy_from_env({}) == ExportPolicy(3600, 20, 45)
    with pytest.raises(SettingsError, match="EXPORT_POLL_ROUNDS_PER_HISTORY"):
        export_policy_from_env({"EXPORT_POLL_ROUNDS_PER_HISTORY": "0"})


def test_every_setting_is_documented_in_the_readme():
    with open("README.md", encoding="utf-8") as readme:
        text = readme.read()
    missing = [name for name in SETTINGS if f"`{name}`" not in text]
    assert missing == []


@pytest.mark.parametrize("request_id", ["RITM0012345", "PRIV-1", "a", "sn:INC.42_x"])
def test_ticket_ids_are_accepted(request_id):
    assert validate_request_id(request_id) == request_id


@pytest.mark.parametrize(
    "request_id", ["", "-x", "a/b", "a b", "é", "x" * 101, None, 7, "a#b", "a?b"]
)
def test_unusable_ids_are_refused(request_id):
    with pytest.raises(InvalidRequest) as caught:
        validate_request_id(request_id)
    assert caught.value.errors[0].pointer == "/requestId"


def test_container_names_are_valid_and_collision_safe():
    names = {container_name(r) for r in ["PRIV-1", "priv-1", "priv.1", "a" * 100, "1"]}
    assert len(names) == 5
    for name in names:
        assert 3 <= len(name) <= 63
        assert name == name.lower()
        assert "--" not in name
        assert name[0].isalnum()
        assert name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert container_name("PRIV-1") == container_name("PRIV-1"), "stable across retries"


def test_request_parse_collects_every_field_error():
    with pytest.raises(InvalidRequest) as caught:
        ExportRequest.parse({"requestId": "a b", "user": "not a user"})
    assert [e.pointer for e in caught.value.errors] == ["/requestId", "/user"]
    with pytest.raises(InvalidRequest):
        ExportRequest.parse(["not", "an", "object"])


def test_request_accepts_object_ids_and_upns():
    oid = "6F1C2F4E-8A53-4C1E-9A55-0C1D2E3F4A5B"
    assert ExportRequest.parse({"requestId": "R1", "user": oid}).user_object_id == oid.lower()
    upn = ExportRequest.parse({"requestId": "R1", "user": "ada@contoso.com"})
    assert upn.user_object_id is None


def test_redaction_scrubs_signatures_keys_and_tokens():
    text = (
        "https://a.blob.core.windows.net/c?sv=2025&si=p&sig=abc%2Bdef%3D&spr=https "
        "AccountKey=Zm9vYmFy==; Authorization: Bearer eyJhbGciOi.x.y"
    )
    clean = redact(text)
    assert "abc%2Bdef" not in clean
    assert "Zm9vYmFy" not in clean
    assert "eyJhbGciOi" not in clean
    assert "si=p" in clean, "non-secret parameters stay readable"


def test_job_round_trips_through_the_orchestration_input():
    job = ExportJob(request_id="R1", user="u", operation_id="op", poll_round=3, progress=12.5)
    assert ExportJob.from_input(job.to_input()) == job
    assert "policy" in job.to_input()


def test_secret_scan_recognises_a_signature_but_not_a_redacted_one():
    from tests.secret_scan import SECRET

    assert SECRET.search("https://a/c?sv=1&sig=AbCdEf0123%2B45")
    assert not SECRET.search("https://a/c?sv=1&sig=REDACTED")


def test_poll_wait_doubles_to_the_cap_and_honours_retry_after():
    assert poll_wait(60, cap=3600) == 120
    assert poll_wait(3000, cap=3600) == 3600
    assert poll_wait(60, cap=600, retry_after=900) == 900


def test_status_document_never_contains_the_input_and_maps_termination():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    doc = status_document(
        "R1", "Running", {"phase": "exporting", "progress": 40}, None, now, now
    ).to_wire()
    assert doc["phase"] == "exporting"
    assert doc["progress"] == 40
    assert doc["terminal"] is False
    cancelled = status_document("R1", "Terminated", {"phase": "exporting"}, None).to_wire()
    assert cancelled["phase"] == "cancelled"
    assert cancelled["terminal"] is True
    failed = status_document("R1", "Failed", None, None).to_wire()
    assert failed["error"]["code"] == "OrchestrationFailed"


def test_status_document_shows_each_ask_applied_or_refused():
    custom = {
        "phase": "exporting",
        "extensions": [{"askId": "ask_1", "days": 1}],
        "refusedExtensions": ["ask_2"],
    }
    doc = status_document("R1", "Running", custom, None).to_wire()
    assert doc["extensions"] == [{"askId": "ask_1", "days": 1}]
    assert doc["refusedExtensions"] == ["ask_2"]


def test_setup_errors_are_recognised_and_name_the_fix():
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    from dsr_export.adapters.failures import setup_error

    missing = setup_error(SettingsError("EXPORT_STORAGE_BLOB_ENDPOINT", "is required"))
    assert missing is not None
    assert missing["setting"] == "EXPORT_STORAGE_BLOB_ENDPOINT"
    refused = setup_error(ClientAuthenticationError("Server failed to authenticate the request"))
    assert refused is not None
    assert "EXPORT_STORAGE_ACCOUNT_KEY" in refused["hint"]
    assert setup_error(HttpResponseError("server busy")) is None
    assert setup_error(ValueError("x")) is None


def test_unset_settings_keep_the_defaults_their_types_declare():
    """Each default is written once, on the type; reading an empty environment gives it."""
    assert export_policy_from_env({}) == ExportPolicy()
    assert LifecycleSettings.from_env({}) == LifecycleSettings()
