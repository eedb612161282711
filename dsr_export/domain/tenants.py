"""The tenant registry's model: which customer tenants one deployment serves, and how.

With ``TENANCY=multi`` one deployment exports for many Entra tenants, each reached through the
multi-tenant app registration that trusts the app's managed identity (docs/deploy.md,
"Many tenants"). An operator adds and changes tenants at run time (``/api/tenants``,
``dsrctl tenants``), so what the registry holds is validated here, once, for every path in:

- ``tenantId``: the customer's Entra tenant id (a GUID, lower case); the key, never changed;
- ``displayName``: the organisation's name as the operator knows it (not personal data);
- ``cloud``: the Microsoft cloud its directory lives in (its login host and Graph root);
- ``regulation`` and ``deadlineWarningDays``: the defaults its DSRs take when a request names
  none;
- ``callbackSecretRef``: where its callback signing secret lives, a Key Vault secret URI. The
  registry holds the reference only: a value that looks like a secret is refused, so that no
  secret ever reaches the registry, its change log or an answer;
- ``exportsAccount``: the blob endpoint of an export account of its own (data residency), or
  none for containers of its own in the shared export account;
- ``evidencePrefix``: the blob prefix of its evidence chains in the evidence account;
- ``quotaBudget``: the share of Graph's per-tenant exportPersonalData quotas its DSRs may
  spend (the gate of issue 20 paces each tenant against its own budget).

A tenant is ``active`` or ``retired`` (its customer left: :func:`retire`). A retired tenant
stays in the registry as a record, because evidence written for years after still names it,
but it takes no new DSR (:attr:`Tenant.accepts_dsrs`), no binding reaches it, the deep health
check and the default list leave it out, and nothing but :func:`reinstate` changes it. Its
state is set by those two only, never by a POST or a PATCH.

Every change is recorded in an append-only, hash-chained log (:func:`change_record`): who, when,
what changed, as field names and hashes of the old and new values; never a value itself. Pure:
no I/O, no clock (times are given), no environment.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from dsr_export.domain.deadlines import GDPR, Regulation, parse_regulation
from dsr_export.domain.request import FieldError, InvalidRequest

#: A tenant id: a GUID, as Entra writes it (lower case).
TENANT_ID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIX: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_SECRET_PATH: Final = re.compile(r"^/secrets/[0-9A-Za-z-]{1,127}(?:/[0-9a-f]{32})?/?$")
_VAULT_SUFFIXES: Final = (
    ".vault.azure.net",
    ".vault.usgovcloudapi.net",
    ".vault.azure.cn",
    ".vault.microsoftazure.de",
)
#: What a callback signing secret looks like (Standard Webhooks): never stored here.
_SECRET_SHAPES: Final = ("whsec_", "@microsoft.keyvault(")
_MAX_NAME: Final = 100

#: Graph's documented exportPersonalData quotas per tenant (docs/graph-contract.md; Microsoft
#: Graph throttling limits, "Identity and access data policy operation service limits"): a
#: budget may spend them, never more.
SUBMITS_PER_DAY_LIMIT: Final = 1000
POLLS_PER_HOUR_LIMIT: Final = 10_000


@dataclass(frozen=True)
class Cloud:
    """One Microsoft cloud: where its tenants sign in and where its Graph answers."""

    name: str
    login_host: str
    graph_root: str


#: The clouds a tenant may live in (Microsoft Graph national cloud deployments).
CLOUDS: Final[Mapping[str, Cloud]] = {
    cloud.name: cloud
    for cloud in (
        Cloud("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
        Cloud("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        Cloud("usgovdod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        Cloud("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    )
}


@dataclass(frozen=True)
class QuotaBudget:
    """How much of the tenant's Graph quota its DSRs may spend (the rest is left to others
    working in that tenant: Priva, the portal, other tools)."""

    submits_per_day: int = SUBMITS_PER_DAY_LIMIT
    polls_per_hour: int = POLLS_PER_HOUR_LIMIT

    def to_json(self) -> dict[str, int]:
        return {"submitsPerDay": self.submits_per_day, "pollsPerHour": self.polls_per_hour}


class TenantState(enum.StrEnum):
    """Whether the deployment serves a tenant (``active``) or kept it as a record only."""

    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class Retirement:
    """When and by whom a tenant was retired (the caller as recorded: kind and id only)."""

    at: str
    by: Mapping[str, Any]


@dataclass(frozen=True)
class Tenant:
    """One customer tenant in the registry (the fields the module docstring explains)."""

    tenant_id: str
    display_name: str
    cloud: str = "global"
    regulation: Regulation = GDPR
    deadline_warning_days: int = 7
    callback_secret_ref: str | None = None
    exports_account: str | None = None
    evidence_prefix: str = ""
    quota_budget: QuotaBudget = QuotaBudget()
    #: Set when the tenant was retired (:func:`retire`); None while it is active.
    retired: Retirement | None = None

    @property
    def cloud_info(self) -> Cloud:
        return CLOUDS[self.cloud]

    @property
    def state(self) -> TenantState:
        return TenantState.ACTIVE if self.retired is None else TenantState.RETIRED

    @property
    def accepts_dsrs(self) -> bool:
        """Whether a new DSR may be submitted for this tenant. A retired tenant takes none: the
        intake answers it exactly as a tenant that is not registered (404)."""
        return self.retired is None

    def to_json(self) -> dict[str, Any]:
        """The registry document's fields (camelCase), as stored and answered."""
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "cloud": self.cloud,
            "regulation": self.regulation.to_json(),
            "deadlineWarningDays": self.deadline_warning_days,
            "callbackSecretRef": self.callback_secret_ref,
            "exportsAccount": self.exports_account,
            "evidencePrefix": self.evidence_prefix,
            "quotaBudget": self.quota_budget.to_json(),
            "state": self.state.value,
            "retiredAt": self.retired.at if self.retired is not None else None,
            "retiredBy": dict(self.retired.by) if self.retired is not None else None,
        }


#: The fields a POST may give and a PATCH may change (``tenantId`` only on POST).
EDITABLE: Final = (
    "displayName",
    "cloud",
    "regulation",
    "deadlineWarningDays",
    "callbackSecretRef",
    "exportsAccount",
    "evidencePrefix",
    "quotaBudget",
)
#: The fields only retiring and reinstating set (read back from storage, never from a body).
LIFECYCLE: Final = ("state", "retiredAt", "retiredBy")
_LIFECYCLE_ONLY: Final = (
    "is changed only by retiring (POST /api/tenants/{tenantId}/retire) or reinstating "
    "(POST /api/tenants/{tenantId}/reinstate)"
)


def default_evidence_prefix(tenant_id: str) -> str:
    """``t-`` and the tenant id: unique, readable, and a valid blob prefix."""
    return f"t-{tenant_id}"


def parse_tenant(payload: Mapping[str, Any]) -> Tenant:
    """A new tenant from a POST body; :class:`InvalidRequest` naming every field at fault."""
    errors = _unknown_fields(payload)
    tenant_id = _tenant_id(payload.get("tenantId"), errors)
    merged = {"evidencePrefix": default_evidence_prefix(tenant_id or "x"), **payload}
    tenant = _build(tenant_id or "", merged, errors)
    if errors:
        raise InvalidRequest(errors)
    assert tenant is not None
    return tenant


def apply_patch(current: Tenant, patch: Mapping[str, Any]) -> Tenant:
    """``current`` with a JSON merge patch (RFC 7396) applied: a field given replaces it, a
    null resets it to its default (an optional field: none). The id never changes, and a
    retired tenant not at all (:class:`TenantRetired`): its record stays as it was retired."""
    if current.retired is not None:
        raise TenantRetired(current.tenant_id)
    errors = _unknown_fields(patch)
    if "tenantId" in patch and str(patch["tenantId"]).lower() != current.tenant_id:
        errors.append(FieldError("/tenantId", "cannot be changed; add another tenant instead"))
    merged = merge_patch(current.to_json(), {k: v for k, v in patch.items() if k in EDITABLE})
    if merged.get("evidencePrefix") is None:
        merged["evidencePrefix"] = default_evidence_prefix(current.tenant_id)
    tenant = _build(current.tenant_id, merged, errors)
    if errors:
        raise InvalidRequest(errors)
    assert tenant is not None
    return tenant


def _unknown_fields(payload: Mapping[str, Any]) -> list[FieldError]:
    """A fault for each field a body may not give: the lifecycle's, and any unknown one."""
    return [
        FieldError(f"/{name}", _LIFECYCLE_ONLY if name in LIFECYCLE else "is not a tenant field")
        for name in sorted(set(payload) - {"tenantId", *EDITABLE})
    ]


def retire(tenant: Tenant, at: datetime, by: Mapping[str, Any]) -> Tenant:
    """``tenant`` retired at ``at`` by ``by``; a tenant retired already stays as it was (the
    first retirement is the one on record)."""
    if tenant.retired is not None:
        return tenant
    return dataclasses.replace(tenant, retired=Retirement(at.isoformat(), dict(by)))


def reinstate(tenant: Tenant) -> Tenant:
    """``tenant`` active again (its fields as they were when it was retired)."""
    return dataclasses.replace(tenant, retired=None)


def merge_patch(target: object, patch: object) -> Any:
    """RFC 7396 JSON merge patch: an object merges member by member (``null`` removes one, so
    the field takes its default), anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


def from_stored(document: Mapping[str, Any]) -> Tenant:
    """A tenant as the registry stored it (validated again: the store is not trusted blindly).
    A document of before tenants could retire has no ``state``: active."""
    tenant = parse_tenant({k: v for k, v in document.items() if k in {"tenantId", *EDITABLE}})
    state = document.get("state", TenantState.ACTIVE.value)
    if state == TenantState.ACTIVE.value:
        return tenant
    at, by = document.get("retiredAt"), document.get("retiredBy")
    if state != TenantState.RETIRED.value or not isinstance(at, str) or not isinstance(by, dict):
        raise InvalidRequest([FieldError("/state", "must be active, or retired with its record")])
    return dataclasses.replace(tenant, retired=Retirement(at, dict(by)))


def _tenant_id(raw: object, errors: list[FieldError]) -> str | None:
    if isinstance(raw, str) and TENANT_ID.fullmatch(raw.strip().lower()):
        return raw.strip().lower()
    errors.append(FieldError("/tenantId", "is required: the tenant's id, a GUID"))
    return None


def _build(tenant_id: str, data: Mapping[str, Any], errors: list[FieldError]) -> Tenant | None:
    """Every field checked, each fault named; None when any is at fault."""
    before = len(errors)
    tenant = Tenant(
        tenant_id=tenant_id,
        display_name=_display_name(data.get("displayName"), errors),
        cloud=_cloud(data.get("cloud"), errors),
        regulation=_regulation(data.get("regulation"), errors),
        deadline_warning_days=_bounded(
            data.get("deadlineWarningDays"), "/deadlineWarningDays", 7, 0, 60, errors
        ),
        callback_secret_ref=_secret_ref(data.get("callbackSecretRef"), errors),
        exports_account=_account(data.get("exportsAccount"), errors),
        evidence_prefix=_prefix(data.get("evidencePrefix"), errors),
        quota_budget=_budget(data.get("quotaBudget"), errors),
    )
    return tenant if len(errors) == before else None


def _display_name(raw: object, errors: list[FieldError]) -> str:
    if (
        isinstance(raw, str)
        and raw.strip()
        and len(raw) <= _MAX_NAME
        and all(ch.isprintable() for ch in raw)
    ):
        return raw.strip()
    errors.append(FieldError("/displayName", f"is required: 1-{_MAX_NAME} printable characters"))
    return ""


def _cloud(raw: object, errors: list[FieldError]) -> str:
    value = "global" if raw is None else raw
    if isinstance(value, str) and value.lower() in CLOUDS:
        return value.lower()
    errors.append(FieldError("/cloud", f"must be one of {', '.join(CLOUDS)}"))
    return "global"


def _regulation(raw: object, errors: list[FieldError]) -> Regulation:
    try:
        return parse_regulation(raw)
    except ValueError as exc:
        errors.append(FieldError("/regulation", str(exc)))
        return GDPR


def _bounded(
    raw: object, pointer: str, default: int, low: int, high: int, errors: list[FieldError]
) -> int:
    if raw is None:
        return default
    if isinstance(raw, int) and not isinstance(raw, bool) and low <= raw <= high:
        return raw
    errors.append(FieldError(pointer, f"must be a whole number from {low} to {high}"))
    return default


def _secret_ref(raw: object, errors: list[FieldError]) -> str | None:
    """A Key Vault secret URI, ``https://{vault}.vault.azure.net/secrets/{name}[/{version}]``."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().lower().startswith(_SECRET_SHAPES):
        # Never echoed, never stored: the detail says what to send instead.
        errors.append(
            FieldError(
                "/callbackSecretRef",
                "must be a Key Vault secret URI, never the secret itself: put the secret in "
                "Key Vault and send https://<vault>.vault.azure.net/secrets/<name>",
            )
        )
        return None
    parts = urlsplit(raw.strip()) if isinstance(raw, str) else None
    if (
        parts is not None
        and parts.scheme == "https"
        and (parts.hostname or "").endswith(_VAULT_SUFFIXES)
        and _SECRET_PATH.match(parts.path)
        and not (parts.query or parts.fragment or parts.username or parts.port)
    ):
        return f"https://{parts.hostname}{parts.path.rstrip('/')}"
    errors.append(
        FieldError(
            "/callbackSecretRef",
            "must be a Key Vault secret URI, https://<vault>.vault.azure.net/secrets/<name>",
        )
    )
    return None


def _account(raw: object, errors: list[FieldError]) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw.strip()) if isinstance(raw, str) else None
    if (
        parts is not None
        and parts.scheme == "https"
        and parts.hostname
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username)
    ):
        return f"https://{parts.netloc}"
    errors.append(
        FieldError(
            "/exportsAccount", "must be a blob endpoint (https://<account>.blob...), or null"
        )
    )
    return None


def _prefix(raw: object, errors: list[FieldError]) -> str:
    if isinstance(raw, str) and _PREFIX.fullmatch(raw):
        return raw
    errors.append(
        FieldError("/evidencePrefix", "must be 1-40 lower-case letters, digits and inner hyphens")
    )
    return ""


def _budget(raw: object, errors: list[FieldError]) -> QuotaBudget:
    if raw is None:
        return QuotaBudget()
    if not isinstance(raw, Mapping):
        errors.append(FieldError("/quotaBudget", "must be {submitsPerDay, pollsPerHour}"))
        return QuotaBudget()
    unknown = sorted(set(raw) - {"submitsPerDay", "pollsPerHour"})
    errors += [FieldError(f"/quotaBudget/{name}", "is not a budget field") for name in unknown]
    return QuotaBudget(
        submits_per_day=_bounded(
            raw.get("submitsPerDay"),
            "/quotaBudget/submitsPerDay",
            SUBMITS_PER_DAY_LIMIT,
            1,
            SUBMITS_PER_DAY_LIMIT,
            errors,
        ),
        polls_per_hour=_bounded(
            raw.get("pollsPerHour"),
            "/quotaBudget/pollsPerHour",
            POLLS_PER_HOUR_LIMIT,
            1,
            POLLS_PER_HOUR_LIMIT,
            errors,
        ),
    )


# -- the registry's answers ------------------------------------------------------------------


class TenantExists(Exception):
    """A tenant with that id is already registered."""


class TenantUnknown(LookupError):
    """No tenant with that id is registered."""


class VersionMismatch(Exception):
    """The tenant changed since the version the caller read (``If-Match``)."""


class TenantRetired(Exception):
    """The tenant is retired: it is a record now, changed by reinstating it only."""


@dataclass(frozen=True)
class Registered:
    """A tenant as the registry holds it: the tenant, its version and who last changed it."""

    tenant: Tenant
    etag: str
    created_at: str
    updated_at: str
    updated_by: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.tenant.to_json(),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "updatedBy": dict(self.updated_by),
        }


# -- the admin-consent link --------------------------------------------------------------------

#: The Graph application permissions the app asks each tenant's administrator to grant.
GRAPH_PERMISSIONS: Final = ("User.Export.All", "User.Read.All")


def consent_link(tenant: Tenant, client_id: str, redirect_uri: str | None = None) -> str:
    """The admin-consent URL for the multi-tenant app in ``tenant``, in the tenant's cloud.

    The Microsoft identity platform's admin consent endpoint (v2.0), asking for the app's
    statically configured permissions (``{graph}/.default``): an administrator of the tenant
    signs in there and grants them, which creates the app's service principal in the tenant.
    """
    cloud = tenant.cloud_info
    query: dict[str, str] = {
        "client_id": client_id,
        "scope": f"{cloud.graph_root}/.default",
    }
    if redirect_uri:
        query["redirect_uri"] = redirect_uri
    return (
        f"{cloud.login_host}/{quote(tenant.tenant_id)}/v2.0/adminconsent?"
        f"{urlencode(query, safe='/:')}"
    )


# -- the change log ----------------------------------------------------------------------------


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def changed_fields(before: Tenant | None, after: Tenant) -> dict[str, dict[str, str | None]]:
    """Field name -> hashes of its old and new values, for each field that changed (all of them
    for a new tenant). Hashes, not values: an auditor can check a value against them without
    the log disclosing it."""
    old = before.to_json() if before is not None else {}
    new = after.to_json()
    return {
        name: {"from": _digest(old[name]) if name in old else None, "to": _digest(new[name])}
        for name in new
        if name not in old or old[name] != new[name]
    }


def change_record(
    *,
    previous_hash: str | None,
    at: datetime,
    by: Mapping[str, Any],
    action: str,
    before: Tenant | None,
    after: Tenant,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of the registry's change log, chained to the line before it by its hash.
    ``extra``: ids and counts the action adds (a forced retirement: ``forced``, ``inFlight``)."""
    record: dict[str, Any] = {
        **dict(extra or {}),
        "at": at.isoformat(),
        "by": dict(by),
        "action": action,
        "tenantId": after.tenant_id,
        "changed": changed_fields(before, after),
        "prev": previous_hash,
    }
    record["hash"] = record_hash(record)
    return record


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a change record carries: of everything in it but the hash itself."""
    return _digest({k: v for k, v in record.items() if k != "hash"})


def verify_chain(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with a change log, line by line (empty: intact)."""
    problems = []
    previous: str | None = None
    for number, record in enumerate(records, 1):
        if record.get("prev") != previous:
            problems.append(f"line {number}: does not chain onto the line before it")
        if record.get("hash") != record_hash(record):
            problems.append(f"line {number}: its hash does not match its content")
        previous = record.get("hash")
    return problems


def with_changes(tenant: Tenant, **changes: Any) -> Tenant:
    """A copy with ``changes`` (tests and the offline host build tenants with it)."""
    return dataclasses.replace(tenant, **changes)
