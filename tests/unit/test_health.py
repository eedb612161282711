"""``GET /api/health``: names what to fix, never echoes a secret."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.core.credentials import AccessToken

from dsr_export.adapters.health import missing_graph_roles
from dsr_export.settings import GraphSettings

KEY = base64.b64encode(b"an account key that must never be echoed").decode()
GOOD = {
    "EXPORT_STORAGE_BLOB_ENDPOINT": "https://exportacct.blob.core.windows.net",
    "EXPORT_STORAGE_ACCOUNT_KEY": KEY,
}
_NAMES = (
    "EXPORT_STORAGE_BLOB_ENDPOINT",
    "EXPORT_STORAGE_ACCOUNT_KEY",
    "EXPORT_SAS_MODE",
    "GRAPH_BASE_URL",
    "CALLBACK_SIGNING_SECRET",
)


@pytest.fixture
def health(
    monkeypatch: pytest.MonkeyPatch, user_function: Callable[[str], Any]
) -> Callable[[dict[str, str]], tuple[int, dict[str, Any]]]:
    """``GET /api/health`` with exactly these settings: its status code and body."""

    def call(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
        for name in _NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        request = func.HttpRequest("GET", "http://localhost/api/health", body=b"", params={})
        response = user_function("get_health")(req=request)
        return response.status_code, json.loads(response.get_body())

    return call


def test_missing_and_invalid_settings_are_each_named(health):
    status, body = health({"GRAPH_BASE_URL": "http://graph.example", "EXPORT_SAS_MODE": "x"})
    assert status == 503
    pointers = {e["pointer"] for e in body["errors"]}
    assert pointers == {"/settings/GRAPH_BASE_URL", "/settings/EXPORT_SAS_MODE"}
    assert body["checks"]["settings"] == "failed"


def test_a_good_configuration_is_described_without_its_secrets(health):
    status, body = health(GOOD)
    assert status == 200
    assert body["configuration"]["sasMode"] == "stored-policy"
    assert body["configuration"]["exportAccount"] == "exportacct"
    assert KEY not in json.dumps(body)


class _Credential:
    def __init__(self, claims: dict[str, Any]) -> None:
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        self.token = f"eyJhbGciOiJub25lIn0.{payload}.c2ln"

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken(self.token, 4_102_444_800)


@pytest.mark.parametrize(
    ("roles", "missing"),
    [
        (["User.Export.All", "User.Read.All"], []),
        (["User.Read.All"], ["User.Export.All"]),
        ([], ["User.Export.All", "User.Read.All"]),
    ],
)
def test_graph_roles_are_read_from_the_identity_token(roles, missing):
    graph = GraphSettings(base_url="https://graph.microsoft.com")
    assert missing_graph_roles(_Credential({"roles": roles}), graph) == missing


def test_no_token_at_all_means_every_role_is_missing():
    from azure.core.exceptions import ClientAuthenticationError

    class _NoIdentity:
        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            raise ClientAuthenticationError("no managed identity endpoint")

    graph = GraphSettings(base_url="https://graph.microsoft.com")
    assert missing_graph_roles(_NoIdentity(), graph) == ["User.Export.All", "User.Read.All"]


def test_an_unreachable_export_account_is_reported_not_raised():
    from azure.core.exceptions import ServiceRequestError

    from dsr_export.adapters.health import storage_problem

    def probe() -> None:
        raise ServiceRequestError("name resolution failed")

    problem = storage_problem(probe)
    assert problem is not None
    assert problem["code"] == "StorageUnreachable"
    assert storage_problem(lambda: None) is None


def test_evidence_in_the_export_account_is_a_warning_and_apart_it_is_not():
    from dsr_export.adapters import health

    env = {
        "EXPORT_STORAGE_BLOB_ENDPOINT": "https://stexport.blob.core.windows.net",
        "EXPORT_STORAGE_ACCOUNT_KEY": "a2V5",
    }
    assert any("EVIDENCE_STORAGE_BLOB_ENDPOINT" in w for w in health.warnings(env))
    apart = {**env, "EVIDENCE_STORAGE_BLOB_ENDPOINT": "https://stevd.blob.core.windows.net"}
    assert not any("EVIDENCE_STORAGE_BLOB_ENDPOINT" in w for w in health.warnings(apart))
    assert health.configuration(apart)["evidenceApart"] is True
    assert health.configuration(env)["evidenceApart"] is False


def test_an_unset_receipt_key_is_a_warning_and_a_wrong_one_an_error(health, monkeypatch):
    monkeypatch.delenv("RECEIPT_SIGNING_KEY_ID", raising=False)
    status, body = health(GOOD)
    assert status == 200
    assert any("RECEIPT_SIGNING_KEY_ID" in warning for warning in body["warnings"])
    status, body = health(
        {**GOOD, "RECEIPT_SIGNING_KEY_ID": "https://kv.vault.azure.net/keys/k/0123456789abcdef"}
    )
    assert status == 503
    assert {e["pointer"] for e in body["errors"]} == {"/settings/RECEIPT_SIGNING_KEY_ID"}


def test_the_deep_check_says_whether_the_tenants_signing_keys_can_be_had(entra_tokens, swap):
    from dsr_export.adapters.entra import SigningKeys, TokenValidator
    from dsr_export.domain.callers import KeysUnavailable
    from dsr_export.settings import EntraSettings
    from intake.health_api import _entra_keys

    checks: dict[str, Any] = {}
    assert _entra_keys(checks) == []
    assert checks == {"entraKeys": "ok"}

    def down(url: str) -> Any:
        raise KeysUnavailable("login host unreachable")

    entra = EntraSettings.from_env(entra_tokens.app_settings())
    assert entra is not None
    swap(token_validator=TokenValidator(entra, SigningKeys(entra, fetch=down)))
    [fault] = _entra_keys(checks)
    assert checks == {"entraKeys": "failed"}
    assert fault.pointer == "/settings/AUTH_AUTHORITY_HOST"
    assert "login host unreachable" in fault.detail
