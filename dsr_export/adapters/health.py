"""Is this deployment able to export? The answers ``GET /api/health`` gives an operator.

Settings are checked on every call (cheap, no I/O). ``deep`` adds what only the live
environment can tell: whether the managed identity's Graph token carries the app roles that
admin consent grants, and whether the export account lets the app in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from azure.core.exceptions import AzureError, ClientAuthenticationError

from dsr_export.adapters.failures import setup_error
from dsr_export.adapters.graph import GRAPH_SCOPE_SUFFIX, TokenProvider
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.request import FieldError
from dsr_export.settings import (
    AuthSettings,
    CallbackSettings,
    DeadlineSettings,
    ExportStorageSettings,
    GraphSettings,
    LifecycleSettings,
    PackageSettings,
    ReceiptSettings,
    SettingsError,
    TenancySettings,
    export_policy_from_env,
)

#: Application permissions the app needs in Graph (what admin consent puts in ``roles``).
GRAPH_ROLES: Final = ("User.Export.All", "User.Read.All")


def _receipt_settings_if_set(env: Mapping[str, str]) -> object:
    """The receipt key's settings, checked when given (unset is a warning: nothing to seal)."""
    return ReceiptSettings.from_env(env) if env.get("RECEIPT_SIGNING_KEY_ID", "").strip() else None


_LOADERS: Final[tuple[Callable[[Mapping[str, str]], object], ...]] = (
    AuthSettings.from_env,
    GraphSettings.from_env,
    ExportStorageSettings.from_env,
    export_policy_from_env,
    CallbackSettings.from_env,
    DeadlineSettings.from_env,
    LifecycleSettings.from_env,
    _receipt_settings_if_set,
    PackageSettings.from_env,
    TenancySettings.from_env,
)


def settings_problems(env: Mapping[str, str]) -> list[FieldError]:
    """Every invalid or missing setting, each named (values are never repeated)."""
    problems = []
    for load in _LOADERS:
        try:
            load(env)
        except SettingsError as exc:
            problems.append(FieldError(f"/settings/{exc.setting}", str(exc)))
    return problems


def configuration(env: Mapping[str, str]) -> dict[str, Any]:
    """The non-secret shape of the configuration, for the operator reading the answer."""
    graph = GraphSettings.from_env(env)
    storage = ExportStorageSettings.from_env(env)
    callbacks = CallbackSettings.from_env(env)
    auth = AuthSettings.from_env(env)
    lifecycle = LifecycleSettings.from_env(env)
    return {
        "graph": f"{graph.base_url}/{graph.api_version}",
        "sasMode": storage.sas_mode.value,
        "sasLifetimeDays": storage.sas_lifetime.days,
        "exportAccount": storage.account_name,
        "callbacks": callbacks.enabled,
        "entraTokens": auth.entra is not None,
        "functionKeyRoles": sorted(role.value for role in auth.function_key_roles),
        "exportRetentionDays": lifecycle.export_retention_days,
        "historyRetentionDays": lifecycle.history_retention_days,
        "downloadLinkMinutes": lifecycle.download_link_minutes,
        "evidenceApart": lifecycle.evidence_blob_endpoint not in (None, storage.blob_endpoint),
        "tenancy": TenancySettings.from_env(env).mode.value,
    }


def warnings(env: Mapping[str, str]) -> list[str]:
    """Settings that are valid but unsafe outside the offline host: said loudly, every call."""
    found = []
    if CallbackSettings.from_env(env).allow_loopback:
        found.append(
            "CALLBACK_ALLOW_LOOPBACK_UNSAFE is on: callbacks may reach loopback addresses. "
            "Only the offline host's tests may set it; remove it from this deployment."
        )
    lifecycle = LifecycleSettings.from_env(env)
    if lifecycle.evidence_blob_endpoint is None:
        found.append(
            "EVIDENCE_STORAGE_BLOB_ENDPOINT is not set: the evidence logs are in the export "
            "account, where its lifecycle rule can delete them. Point it at the evidence "
            "account (infra/ sets it)."
        )
    if not env.get("RECEIPT_SIGNING_KEY_ID", "").strip():
        found.append(
            "RECEIPT_SIGNING_KEY_ID is not set: no package can be sealed with a signed receipt, "
            "and /api/.well-known/jwks.json answers 503. Point it at the receipt key "
            "(infra/ sets it)."
        )
    return found


def missing_graph_roles(credential: TokenProvider, graph: GraphSettings) -> list[str]:
    """App roles absent from the identity's Graph token (read, not verified: it is our own).

    All of them when no token can be had (no identity, or ``AZURE_CLIENT_ID`` names another).
    """
    try:
        token = credential.get_token(graph.base_url + GRAPH_SCOPE_SUFFIX).token
    except ClientAuthenticationError:
        # No token at all: the identity is missing or AZURE_CLIENT_ID names another one.
        return list(GRAPH_ROLES)
    granted = set(_claims(token).get("roles") or [])
    return [role for role in GRAPH_ROLES if role not in granted]


def storage_problem(probe: Callable[[], object]) -> ErrorDoc | None:
    """Run a harmless call against the export account; the error with its fix, if any."""
    try:
        probe()
    except AzureError as exc:
        return setup_error(exc) or {
            "code": "StorageUnreachable",
            "category": "configuration",
            "message": f"the export account did not answer ({type(exc).__name__}); check "
            "EXPORT_STORAGE_BLOB_ENDPOINT and the network path to it",
        }
    return None


def _claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}
