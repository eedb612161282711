"""Typed settings, one object per concern, read once from the environment.

Each ``from_env`` validates everything it reads and raises :class:`SettingsError` naming the
setting at fault, so a misconfigured app says what to fix instead of failing deep inside a call.
Orchestrators may not read the environment (replays must be deterministic), so the knobs that
steer the orchestration (:class:`~dsr_export.domain.job.ExportPolicy`) are read by the starter
and travel in the orchestration input. This layer sits between the domain (whose types it fills)
and the adapters (which it configures).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import json
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from dsr_export.domain.bindings import valid_principal
from dsr_export.domain.callers import Role, parse_roles
from dsr_export.domain.job import ExportPolicy
from dsr_export.domain.organisation import OrganisationProfile, ProfileInvalid
from dsr_export.domain.package_manifest import PACKAGE_LANGUAGES
from dsr_export.domain.request import InvalidRequest

#: Every setting the app reads, with a one-line meaning. Infra and docs are checked against it.
SETTINGS: Final[dict[str, str]] = {
    "GRAPH_BASE_URL": "Microsoft Graph root; national clouds use their own host",
    "GRAPH_API_VERSION": "Graph API version for exportPersonalData and its operations",
    "GRAPH_TIMEOUT_SECONDS": "per-request timeout for Graph calls",
    "EXPORT_STORAGE_BLOB_ENDPOINT": "blob endpoint of the export storage account (https)",
    "EXPORT_SAS_MODE": "stored-policy (default) or user-delegation",
    "EXPORT_STORAGE_ACCOUNT_KEY": "export account key; stored-policy mode only (Key Vault ref)",
    "EXPORT_SAS_LIFETIME_DAYS": "how long the SAS given to Graph lives (user-delegation: <= 7)",
    "EXPORT_POLL_MAX_INTERVAL_SECONDS": "cap of the back-off between two polls of Graph",
    "EXPORT_POLL_ROUNDS_PER_HISTORY": "poll rounds before the orchestration continues as new",
    "EXPORT_TIMEOUT_DAYS": "overall limit after which a DSR ends timed_out",
    "CALLBACK_SIGNING_SECRET": "Standard Webhooks secret (whsec_...) signing ticket callbacks",
    "CALLBACK_ALLOWED_HOSTS": "comma-separated hosts callbacks may go to (SSRF guard)",
    "DEADLINE_WARNING_DAYS": "how long before the legal deadline a warning is raised",
    "RECEIVED_AT_MAX_AGE_DAYS": "how far in the past a request's receivedAt may lie",
    "CALLBACK_ALLOW_LOOPBACK_UNSAFE": "offline host only: callbacks may go to loopback receivers",
    "AUTH_FUNCTION_KEY_ROLES": "app roles of callers with a function key and no Entra token",
    "AUTH_AUTHORITY_HOST": "Entra sign-in authority (https): its OpenID metadata names the keys",
    "AUTH_TENANT_ID": "tenant of the app's Entra registration: the only tenant whose tokens count",
    "AUTH_CLIENT_ID": "client id of the app's Entra registration (an audience); empty: keys only",
    "AUTH_APP_ID_URI": "Application ID URI of that registration (the other accepted audience)",
    "EVIDENCE_STORAGE_BLOB_ENDPOINT": "blob endpoint of the evidence account (immutable, https)",
    "DOWNLOAD_LINK_MINUTES": "how long a delivery link lives (at most 1440)",
    "EXPORT_RETENTION_DAYS": "days after a DSR ended before its exported data is deleted",
    "HISTORY_RETENTION_DAYS": "days after a DSR ended before its durable history is purged",
    "CUSTOM_EXTENSION_MAX_DAYS": "days a {days: N} regulation's deadline may be extended by",
    "RECEIPT_SIGNING_KEY_ID": "versionless id of the Key Vault EC P-256 key signing receipts",
    "RECEIPT_KEY_PUBLISH_DAYS": "days a retired receipt key version stays in the JWKS",
    "PACKAGE_LANGUAGE": "language of the subject's package when the request names none (en, de)",
    "PACKAGE_PART_MAX_BYTES": "bytes above which the subject's package is split into parts",
    "PACKAGE_REVIEW": "off, or required: a package is reviewed and approved before it is delivered",
    "ORGANISATION_PROFILE": "the organisation's profile for the package (JSON, or a file's path)",
    "QUEUE_RETENTION_DAYS": "days a poisoned request or a rejection record stays queued (1-30)",
    "TENANCY": "single (default: the managed identity's own tenant) or multi (a registry)",
    "MULTI_TENANT_CLIENT_ID": "client id of the multi-tenant app trusting the identity (multi)",
    "TENANCY_OPERATORS": "principals bound to every tenant by configuration (multi), by commas",
}

#: Settings the Functions platform and SDKs read on the app's behalf (not by our code).
PLATFORM_SETTINGS: Final[dict[str, str]] = {
    "AzureWebJobsStorage": "host storage: dsr-requests queue, host blobs, Azure Storage task hub",
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra authentication for telemetry",
    "AZURE_CLIENT_ID": "selects the user-assigned managed identity for azure-identity",
    # durableBackend=durableTaskScheduler only (infra/): app-setting overrides of host.json.
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type": (
        "task hub backend: azureManaged (the Durable Task Scheduler) instead of Azure Storage"
    ),
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName": (
        "which setting holds the scheduler connection string"
    ),
    "AzureFunctionsJobHost__extensions__durableTask__hubName": "the task hub on the scheduler",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": (
        "scheduler endpoint and the managed identity that signs in to it (no key)"
    ),
}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.setting = name


class SasMode(enum.StrEnum):
    """How the SAS handed to Graph is signed (see docs/security.md)."""

    STORED_POLICY = "stored-policy"
    USER_DELEGATION = "user-delegation"


#: A user delegation key, and so a user delegation SAS, lives at most 7 days.
USER_DELEGATION_MAX_LIFETIME: Final = timedelta(days=7)


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value.startswith("@Microsoft.KeyVault("):
        # App Service passes an unresolvable reference through as text: never use it as a value.
        raise SettingsError(
            name,
            "is a Key Vault reference the platform could not resolve; check the app identity's "
            "access to the vault (Key Vault Secrets User) and the secret's name",
        )
    if value:
        return value
    if default is None:
        raise SettingsError(name, "is required but not set")
    return default


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = _get(env, name, "false").lower()
    if raw not in {"true", "false"}:
        raise SettingsError(name, f"must be true or false, got {raw!r}")
    return raw == "true"


def _https_url(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    """An https:// URL that every parser reads alike. ``urlsplit`` here and urllib3 in the
    sender disagree on backslashes, userinfo and stray whitespace (the review's
    ``https://graph.microsoft.com@evil.example`` started a host whose every Graph call was
    then refused as foreign): such a setting stops the start, naming itself."""
    value = _get(env, name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise SettingsError(name, f"must be an https:// URL, got {value!r}")
    if not parts.hostname:
        raise SettingsError(name, f"must be an absolute URL, got {value!r}")
    if "\\" in value or "@" in parts.netloc:
        raise SettingsError(name, "must not carry a backslash or credentials")
    if any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in value):
        raise SettingsError(name, "must not contain control, format or whitespace characters")
    return value


@dataclass(frozen=True)
class GraphSettings:
    """Where Graph lives. Always https: the bearer token never travels in the clear."""

    base_url: str
    api_version: str = "beta"
    timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GraphSettings:
        version = _get(env, "GRAPH_API_VERSION", "beta")
        if version not in {"beta", "v1.0"}:
            raise SettingsError("GRAPH_API_VERSION", f"must be beta or v1.0, got {version!r}")
        return cls(
            base_url=_https_url(env, "GRAPH_BASE_URL", "https://graph.microsoft.com"),
            api_version=version,
            timeout_seconds=float(_int(env, "GRAPH_TIMEOUT_SECONDS", 30, low=1, high=230)),
        )


@dataclass(frozen=True)
class ExportStorageSettings:
    """The export account: where Graph writes the data subject's files."""

    blob_endpoint: str
    sas_mode: SasMode
    sas_lifetime: timedelta
    account_key: str | None = field(default=None, repr=False)

    @property
    def account_name(self) -> str:
        """Account name: first label of the host, or the first path segment (emulator style)."""
        parts = urlsplit(self.blob_endpoint)
        path = parts.path.strip("/")
        if path:
            return path.split("/")[0]
        return (parts.hostname or "").split(".")[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ExportStorageSettings:
        raw_mode = _get(env, "EXPORT_SAS_MODE", SasMode.STORED_POLICY.value)
        try:
            mode = SasMode(raw_mode)
        except ValueError:
            choices = ", ".join(m.value for m in SasMode)
            raise SettingsError("EXPORT_SAS_MODE", f"must be one of {choices}") from None
        default_days = 7 if mode is SasMode.USER_DELEGATION else 60
        days = _int(env, "EXPORT_SAS_LIFETIME_DAYS", default_days, low=1, high=365)
        lifetime = timedelta(days=days)
        if mode is SasMode.USER_DELEGATION and lifetime > USER_DELEGATION_MAX_LIFETIME:
            raise SettingsError(
                "EXPORT_SAS_LIFETIME_DAYS",
                f"is {days}, but a user delegation SAS lives at most 7 days",
            )
        key = _get(env, "EXPORT_STORAGE_ACCOUNT_KEY", "") or None
        if mode is SasMode.STORED_POLICY and key is None:
            raise SettingsError(
                "EXPORT_STORAGE_ACCOUNT_KEY",
                "is required when EXPORT_SAS_MODE is stored-policy "
                "(or set EXPORT_SAS_MODE=user-delegation)",
            )
        return cls(
            blob_endpoint=_https_url(env, "EXPORT_STORAGE_BLOB_ENDPOINT"),
            sas_mode=mode,
            sas_lifetime=lifetime,
            account_key=key,
        )


def export_policy_from_env(env: Mapping[str, str] = os.environ) -> ExportPolicy:
    """The orchestration knobs (:class:`~dsr_export.domain.job.ExportPolicy`), validated; an
    unset knob keeps the default the policy itself declares (written there once)."""
    default = ExportPolicy()
    return ExportPolicy(
        max_poll_interval_seconds=_int(
            env,
            "EXPORT_POLL_MAX_INTERVAL_SECONDS",
            default.max_poll_interval_seconds,
            low=60,
            high=24 * 3600,
        ),
        rounds_per_history=_int(
            env, "EXPORT_POLL_ROUNDS_PER_HISTORY", default.rounds_per_history, low=1, high=500
        ),
        timeout_days=_int(env, "EXPORT_TIMEOUT_DAYS", default.timeout_days, low=1, high=365),
    )


#: A host name (``acme.service-now.com``) or a wildcard over its subdomains (``*.atlassian.net``).
_HOST_PATTERN: Final = re.compile(
    r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
#: Standard Webhooks secrets are 24 to 64 random bytes; fewer than 16 is a weak key.
_MIN_SECRET_BYTES: Final = 16
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class CallbackSettings:
    """Where ticket callbacks may go and the key that signs them.

    Without a secret, callbacks are off and a request naming a ``callbackUrl`` is refused at
    intake (an unsigned callback would let anyone forge ticket updates). An empty allowlist
    allows no host: the SSRF guard fails closed.
    """

    signing_secret: str | None = field(default=None, repr=False)
    allowed_hosts: frozenset[str] = frozenset()
    #: Loopback receivers (any port) allowed: the offline host's test receivers. Never in Azure;
    #: the health check reports it.
    allow_loopback: bool = False

    @property
    def enabled(self) -> bool:
        """Callbacks can be signed, so they may be requested."""
        return self.signing_secret is not None

    def signing_key(self) -> bytes:
        """The HMAC key: the base64 bytes after ``whsec_``."""
        if self.signing_secret is None:
            raise SettingsError("CALLBACK_SIGNING_SECRET", "is required to send callbacks")
        return base64.b64decode(self.signing_secret.removeprefix(WEBHOOK_SECRET_PREFIX))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CallbackSettings:
        secret = _get(env, "CALLBACK_SIGNING_SECRET", "") or None
        if secret is not None:
            # Never echo the value: the message may reach a log.
            if not secret.startswith(WEBHOOK_SECRET_PREFIX):
                raise SettingsError("CALLBACK_SIGNING_SECRET", "must start with whsec_")
            try:
                key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
            except (binascii.Error, ValueError):
                raise SettingsError(
                    "CALLBACK_SIGNING_SECRET", "must be whsec_ followed by base64"
                ) from None
            if len(key) < _MIN_SECRET_BYTES:
                raise SettingsError(
                    "CALLBACK_SIGNING_SECRET", f"must decode to at least {_MIN_SECRET_BYTES} bytes"
                )
        hosts = frozenset(
            host.strip().lower()
            for host in env.get("CALLBACK_ALLOWED_HOSTS", "").split(",")
            if host.strip()
        )
        for host in sorted(hosts):
            if not _HOST_PATTERN.fullmatch(host):
                raise SettingsError(
                    "CALLBACK_ALLOWED_HOSTS",
                    f"{host!r} is not a host name or *.domain wildcard",
                )
        return cls(
            signing_secret=secret,
            allowed_hosts=hosts,
            allow_loopback=_bool(env, "CALLBACK_ALLOW_LOOPBACK_UNSAFE"),
        )


@dataclass(frozen=True)
class DeadlineSettings:
    """How early the legal deadline warning is raised. Read by the starter, carried in the input."""

    warning_days: int = 7
    received_at_max_age_days: int = 400

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DeadlineSettings:
        return cls(
            warning_days=_int(env, "DEADLINE_WARNING_DAYS", 7, low=0, high=60),
            received_at_max_age_days=_int(env, "RECEIVED_AT_MAX_AGE_DAYS", 400, low=1, high=3650),
        )


@dataclass(frozen=True)
class LifecycleSettings:
    """What happens to a DSR after its export: delivery links, extensions, retention.

    The evidence account is kept apart from the export account (whose lifecycle rule deletes
    everything, as a backstop); without ``EVIDENCE_STORAGE_BLOB_ENDPOINT`` the logs go to the
    export account's endpoint, which the health check reports.
    """

    evidence_blob_endpoint: str | None = None
    download_link_minutes: int = 60
    export_retention_days: int = 30
    history_retention_days: int = 90
    custom_extension_max_days: int = 0
    #: Days a poisoned request (its whole body: a UPN) or a rejection record stays queued.
    queue_retention_days: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LifecycleSettings:
        """Validated; an unset setting keeps the default declared on the fields above."""
        default = cls()
        endpoint = (
            _https_url(env, "EVIDENCE_STORAGE_BLOB_ENDPOINT")
            if _get(env, "EVIDENCE_STORAGE_BLOB_ENDPOINT", "")
            else None
        )
        export_days = _int(
            env, "EXPORT_RETENTION_DAYS", default.export_retention_days, low=1, high=3650
        )
        history_days = _int(
            env, "HISTORY_RETENTION_DAYS", default.history_retention_days, low=1, high=3650
        )
        if history_days < export_days:
            # The history is what finds the data: purged first, the data would never be deleted.
            raise SettingsError(
                "HISTORY_RETENTION_DAYS",
                f"must be at least EXPORT_RETENTION_DAYS ({export_days}), got {history_days}",
            )
        return cls(
            evidence_blob_endpoint=endpoint,
            download_link_minutes=_int(
                env, "DOWNLOAD_LINK_MINUTES", default.download_link_minutes, low=1, high=24 * 60
            ),
            export_retention_days=export_days,
            history_retention_days=history_days,
            custom_extension_max_days=_int(
                env,
                "CUSTOM_EXTENSION_MAX_DAYS",
                default.custom_extension_max_days,
                low=0,
                high=366,
            ),
            queue_retention_days=_int(
                env, "QUEUE_RETENTION_DAYS", default.queue_retention_days, low=1, high=30
            ),
        )


#: A tenant or client id: a GUID, as Entra writes it.
_GUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Entra's global v1.0 token issuer host (v1.0 tokens name it whatever the authority).
V1_ISSUER_HOST: Final = "https://sts.windows.net"


@dataclass(frozen=True)
class EntraSettings:
    """The one Entra tenant and app registration whose access tokens the app accepts.

    The app validates a bearer token itself (signature against the tenant's published keys,
    issuer, audience, lifetime, tenant, app roles): it does not rely on a platform flag to know
    whether something in front of it did (see docs/security.md, "Who may call").
    """

    authority: str
    tenant_id: str
    client_id: str
    app_id_uri: str | None = None

    @property
    def audiences(self) -> tuple[str, ...]:
        """v2.0 tokens name the client id, v1.0 tokens the Application ID URI."""
        return (self.client_id, self.app_id_uri) if self.app_id_uri else (self.client_id,)

    @property
    def issuer_v2(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0"

    @property
    def issuer_v1(self) -> str:
        return f"{V1_ISSUER_HOST}/{self.tenant_id}/"

    @property
    def issuers(self) -> tuple[str, str]:
        return (self.issuer_v2, self.issuer_v1)

    @property
    def discovery_url(self) -> str:
        """The tenant's OpenID configuration (v2.0 endpoint), which names its key set."""
        return f"{self.issuer_v2}/.well-known/openid-configuration"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EntraSettings | None:
        """None when no registration is configured (``AUTH_CLIENT_ID`` empty): keys only."""
        client_id = _get(env, "AUTH_CLIENT_ID", "").lower()
        if not client_id:
            return None
        if not _GUID.fullmatch(client_id):
            raise SettingsError("AUTH_CLIENT_ID", "must be the registration's client id (a GUID)")
        tenant_id = _get(env, "AUTH_TENANT_ID").lower()
        if not _GUID.fullmatch(tenant_id):
            raise SettingsError("AUTH_TENANT_ID", "must be the tenant id (a GUID)")
        authority = _https_url(env, "AUTH_AUTHORITY_HOST", "https://login.microsoftonline.com")
        if urlsplit(authority).path.strip("/") or urlsplit(authority).query:
            raise SettingsError("AUTH_AUTHORITY_HOST", "must be an origin only (no path)")
        app_id_uri = _get(env, "AUTH_APP_ID_URI", "") or None
        if app_id_uri is not None and (
            len(app_id_uri) > 256 or any(char.isspace() or ord(char) < 32 for char in app_id_uri)
        ):
            raise SettingsError("AUTH_APP_ID_URI", "must be the Application ID URI (api://...)")
        return cls(authority, tenant_id, client_id, app_id_uri)


@dataclass(frozen=True)
class AuthSettings:
    """Who may call the HTTP API, and as what.

    ``entra`` is the registration whose bearer tokens the app validates itself (None: no
    registration, a bearer token is refused). ``X-MS-CLIENT-PRINCIPAL`` is never read: App
    Service authentication may stand in front as a second wall, but the app does not take its
    word. ``function_key_roles`` are the roles of a caller that presents a function key and no
    token (the fallback for ticketing systems that send only a static header).
    """

    entra: EntraSettings | None = None
    function_key_roles: frozenset[Role] = frozenset({Role.SUBMIT, Role.READ})

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AuthSettings:
        raw = _get(env, "AUTH_FUNCTION_KEY_ROLES", "DSR.Submit,DSR.Read")
        if raw.strip().lower() == "none":
            roles: frozenset[Role] = frozenset()
        else:
            try:
                roles = parse_roles(raw)
            except ValueError as exc:
                raise SettingsError("AUTH_FUNCTION_KEY_ROLES", f"{exc}, or none") from None
        return cls(entra=EntraSettings.from_env(env), function_key_roles=roles)


_KEY_PATH = re.compile(r"^/keys/(?P<name>[0-9A-Za-z-]{1,127})/?$")


@dataclass(frozen=True)
class ReceiptSettings:
    """The Key Vault key that signs package receipts, and how long its old versions are shown.

    The key id is versionless (``https://{vault}.vault.azure.net/keys/{name}``): the current
    version signs, so rotating the key (a new version) needs no redeployment, and every receipt
    names the exact version in its ``kid``. ``publish_days`` keeps a retired version in the JWKS
    that long after its successor took over: at least the evidence's retention (six years), so
    a receipt can be checked as long as the evidence that mentions it exists.
    """

    vault_url: str
    key_name: str
    publish_days: int = 2192

    @property
    def key_id(self) -> str:
        return f"{self.vault_url}/keys/{self.key_name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReceiptSettings:
        key_id = _https_url(env, "RECEIPT_SIGNING_KEY_ID")
        parts = urlsplit(key_id)
        match = _KEY_PATH.match(parts.path)
        if match is None or parts.query or parts.fragment:
            raise SettingsError(
                "RECEIPT_SIGNING_KEY_ID",
                "must be a versionless key id, https://<vault>.vault.azure.net/keys/<name> (the "
                "current version signs, so a rotation needs no redeployment)",
            )
        return cls(
            vault_url=f"https://{parts.netloc}",
            key_name=match["name"],
            publish_days=_int(env, "RECEIPT_KEY_PUBLISH_DAYS", 2192, low=1, high=36500),
        )


class Tenancy(enum.StrEnum):
    """How many Entra tenants one deployment serves (docs/deploy.md, "Many tenants")."""

    SINGLE = "single"
    MULTI = "multi"


@dataclass(frozen=True)
class TenancySettings:
    """``single``: the managed identity calls Graph in its own tenant, as it always has.
    ``multi``: Graph tokens for each registered tenant come from the multi-tenant app
    registration ``MULTI_TENANT_CLIENT_ID``, which trusts the managed identity as a federated
    identity credential: no secret anywhere (``dsr_export.adapters.credentials``)."""

    mode: Tenancy = Tenancy.SINGLE
    client_id: str | None = None
    #: ``TENANCY_OPERATORS``: principals (object, application or group ids, key fingerprints)
    #: bound to every tenant by configuration, beside the registry's bindings: the first
    #: operator, who makes the other bindings (docs/security.md, "Callers bound to tenants").
    operators: frozenset[str] = frozenset()

    @property
    def multi(self) -> bool:
        return self.mode is Tenancy.MULTI

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TenancySettings:
        raw = _get(env, "TENANCY", Tenancy.SINGLE.value).lower()
        try:
            mode = Tenancy(raw)
        except ValueError:
            raise SettingsError("TENANCY", "must be single or multi") from None
        client_id = _get(env, "MULTI_TENANT_CLIENT_ID", "").lower() or None
        if client_id is not None and not _GUID.fullmatch(client_id):
            raise SettingsError(
                "MULTI_TENANT_CLIENT_ID", "must be the multi-tenant app's client id (a GUID)"
            )
        if mode is Tenancy.MULTI and client_id is None:
            raise SettingsError(
                "MULTI_TENANT_CLIENT_ID",
                "is required with TENANCY=multi: the client id of the multi-tenant app "
                "registration whose federated credential trusts the managed identity",
            )
        return cls(mode=mode, client_id=client_id, operators=_operators(env))


def _operators(env: Mapping[str, str]) -> frozenset[str]:
    found = set()
    for raw in _get(env, "TENANCY_OPERATORS", "").split(","):
        if raw.strip():
            try:
                found.add(valid_principal(raw))
            except InvalidRequest:
                raise SettingsError(
                    "TENANCY_OPERATORS",
                    "must list Entra object, application or group ids, or function key "
                    "fingerprints sha256:<16 hex digits>, separated by commas",
                ) from None
    return frozenset(found)


@functools.cache
def tenancy_settings() -> TenancySettings:
    """The process-wide tenancy settings, read on first use."""
    return TenancySettings.from_env()


@functools.cache
def receipt_settings() -> ReceiptSettings:
    """The process-wide receipt-signing settings, read on first use."""
    return ReceiptSettings.from_env()


@dataclass(frozen=True)
class PackageSettings:
    """The subject's package: its default language, where it is split, and the organisation's
    profile (who it is, its DPO, the processing information of GDPR Art. 15(1)).

    The profile is checked when the settings are read (``GET /api/health`` reads them), and a
    field missing is named; without a profile the app runs, and packaging is refused naming
    ``ORGANISATION_PROFILE``.
    """

    language: str = "en"
    part_max_bytes: int = 4 * 1024**3
    organisation: OrganisationProfile | None = None
    issuer: str = "dsr-export"
    #: ``PACKAGE_REVIEW=required``: each package is built as a preview that a ``DSR.Manage``
    #: caller reviews (may withhold files, GDPR Art. 15(4)) and approves before any link to it.
    review_required: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PackageSettings:
        language = _get(env, "PACKAGE_LANGUAGE", "en").strip().lower()
        if language not in PACKAGE_LANGUAGES:
            raise SettingsError(
                "PACKAGE_LANGUAGE", f"must be one of {', '.join(PACKAGE_LANGUAGES)}"
            )
        host = env.get("WEBSITE_HOSTNAME", "").strip()
        review = _get(env, "PACKAGE_REVIEW", "off").strip().lower()
        if review not in ("off", "required"):
            raise SettingsError("PACKAGE_REVIEW", "must be off or required")
        return cls(
            review_required=review == "required",
            language=language,
            part_max_bytes=_int(
                env, "PACKAGE_PART_MAX_BYTES", 4 * 1024**3, low=1024**2, high=64 * 1024**3
            ),
            organisation=_organisation(_get(env, "ORGANISATION_PROFILE", "").strip()),
            issuer=f"https://{host}" if host else "dsr-export",
        )


def _organisation(raw: str) -> OrganisationProfile | None:
    """The profile from JSON text or from a JSON file's path (relative: to the app's root)."""
    if not raw:
        return None
    text = raw
    if not raw.startswith("{"):
        path = Path(raw) if Path(raw).is_absolute() else Path(__file__).parent.parent / raw
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            raise SettingsError(
                "ORGANISATION_PROFILE", "is neither JSON nor a readable file"
            ) from None
    try:
        return OrganisationProfile.parse(json.loads(text))
    except ValueError as exc:
        field_name = exc.field if isinstance(exc, ProfileInvalid) else "(document)"
        detail = str(exc) if isinstance(exc, ProfileInvalid) else "not valid JSON"
        raise SettingsError("ORGANISATION_PROFILE", f"{detail} ({field_name})") from None


@functools.cache
def package_settings() -> PackageSettings:
    """The process-wide package settings, read on first use."""
    return PackageSettings.from_env()


@functools.cache
def lifecycle_settings() -> LifecycleSettings:
    """The process-wide lifecycle settings, read on first use."""
    return LifecycleSettings.from_env()


@functools.cache
def auth_settings() -> AuthSettings:
    """The process-wide authentication settings, read on first use."""
    return AuthSettings.from_env()


@functools.cache
def graph_settings() -> GraphSettings:
    """The process-wide Graph settings, read on first use."""
    return GraphSettings.from_env()


@functools.cache
def export_storage_settings() -> ExportStorageSettings:
    """The process-wide export storage settings, read on first use."""
    return ExportStorageSettings.from_env()


@functools.cache
def export_policy() -> ExportPolicy:
    """The process-wide orchestration policy, read on first use."""
    return export_policy_from_env()


@functools.cache
def callback_settings() -> CallbackSettings:
    """The process-wide callback settings, read on first use."""
    return CallbackSettings.from_env()


@functools.cache
def deadline_settings() -> DeadlineSettings:
    """The process-wide deadline settings, read on first use."""
    return DeadlineSettings.from_env()


def clear_cache() -> None:
    """Forget every setting read, so the next use reads the environment again (tests)."""
    for reader in (
        tenancy_settings,
        receipt_settings,
        auth_settings,
        lifecycle_settings,
        package_settings,
        graph_settings,
        export_storage_settings,
        export_policy,
        callback_settings,
        deadline_settings,
    ):
        reader.cache_clear()
