"""Is this deployment able to export? The answers ``GET /api/health`` gives an operator.

Settings are checked on every call (cheap, no I/O). ``deep`` adds what only the live
environment can tell: whether the managed identity's Graph token carries the app roles that
admin consent grants, and whether the export account lets the app in.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.core.exceptions import AzureError, ClientAuthenticationError

from dsr_export.adapters.failures import setup_error
from dsr_export.adapters.graph import GRAPH_SCOPE_SUFFIX, TokenProvider
from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.logs import log_event
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


#: An Entra error code in a token error's text (``AADSTS700016: ...``).
_AADSTS = re.compile(r"AADSTS\d+")


@dataclass
class TenantHealth:
    """``TENANCY=multi``: what ``deep`` found for each registered tenant, and each fault named."""

    results: dict[str, dict[str, str]] = field(default_factory=dict)
    faults: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.faults


def tenant_health(
    tenants: Iterable[tuple[str, Callable[[], object]]],
    credential_for: Callable[[str], TokenProvider],
    graph: GraphSettings,
) -> TenantHealth:
    """Per tenant (its id and a probe of its export storage): can a Graph token be had there
    (its administrator consented), does it carry ``User.Export.All`` and ``User.Read.All``, does
    its export storage let the app in. A token refused is logged with Entra's code only."""
    found = TenantHealth()
    for tenant_id, probe in tenants:
        result = {"token": "ok", "graphRoles": "ok", "storage": "ok"}
        where = f"/tenants/{tenant_id}"
        try:
            token = credential_for(tenant_id).get_token(graph.base_url + GRAPH_SCOPE_SUFFIX).token
        except ClientAuthenticationError as exc:
            code = _AADSTS.search(str(exc))
            reason = code.group(0) if code else type(exc).__name__
            log_event(
                "tenant_token_failed", level=logging.WARNING, tenant_id=tenant_id, reason=reason
            )
            result["token"], result["graphRoles"] = "failed", "skipped"
            found.faults.append(
                FieldError(
                    f"{where}/token",
                    f"no Graph token in this tenant ({reason}): its administrator must grant "
                    "the app's permissions with the consent link (dsrctl tenants consent-link)",
                )
            )
        else:
            granted = set(_claims(token).get("roles") or [])
            missing = [role for role in GRAPH_ROLES if role not in granted]
            if missing:
                result["graphRoles"] = "missing"
                found.faults.append(
                    FieldError(
                        f"{where}/graphRoles",
                        f"the tenant's token lacks {', '.join(missing)}: its administrator must "
                        "consent again (the consent link asks for every permission)",
                    )
                )
        error = storage_problem(probe)
        if error is not None:
            result["storage"] = "failed"
            found.faults.append(
                FieldError(f"{where}/storage", str(error.get("hint") or error["message"]))
            )
        found.results[tenant_id] = result
    return found
