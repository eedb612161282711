"""Who is calling, and what they may do: app roles, and the caller recorded on a DSR.

A caller with an Entra ID access token is judged by the app itself
(``dsr_export.adapters.entra``: signature against the tenant's published keys, issuer,
audience, lifetime, tenant); :func:`from_claims` turns the claims of a token that passed into a
caller with the app roles of its ``roles`` claim (``DSR.Submit``, ``DSR.Read``, ``DSR.Manage``),
checked route by route. ``X-MS-CLIENT-PRINCIPAL`` is never read: whether App Service
authentication stands in front is something the app cannot know for sure (on Flex Consumption
nothing says ``WEBSITE_AUTH_ENABLED`` is set), and a header is only as good as whatever wrote it.

A caller is recorded by pseudonymous ids only: the application id of a service, or the object
id of a person, never a name or UPN. Ticketing systems that can send nothing but a static
header (Jira automation) may use a function key instead, if ``AUTH_FUNCTION_KEY_ROLES`` grants
key holders roles; such a caller is recorded by a fingerprint of the key the Functions host
checked (the platform does not tell the app the key's name; an administrator can match the
fingerprint, see docs/security.md).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: What a caller's id (and tenant id) may look like: a GUID, or a plain name of letters, digits
#: and ``. _ -`` (the offline host's test callers); never an address.
CALLER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Role(enum.StrEnum):
    """The app roles on the app's Entra registration."""

    SUBMIT = "DSR.Submit"
    READ = "DSR.Read"
    MANAGE = "DSR.Manage"
    #: Changes the tenant registry (``/api/tenants``): which tenants this deployment serves.
    ADMIN = "DSR.Admin"


class NotAuthenticated(ValueError):
    """The request carries no identity the app accepts; the message says why."""


class TokenRefused(NotAuthenticated):
    """The bearer token is not one the app accepts; ``reason`` is a code for the log.

    The message says what is wrong with the token, never what it contains.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class KeysUnavailable(Exception):
    """The tenant's signing keys cannot be had now: no token can be judged (503, not 401)."""


@dataclass(frozen=True)
class TenantScope:
    """Where a caller may act: the tenants whose DSRs it may submit, see and change.

    App roles say *what* a caller may do; its scope says *where* (issue 21). ``tenants`` is
    ``None`` for every tenant (a single-tenant deployment, or an operator bound to all of
    them), else the tenant ids the caller is bound to (possibly none). A DSR of a tenant
    outside the scope is answered as if it did not exist: 404, never 403, so that a caller
    learns nothing of another tenant's requests.
    """

    tenants: frozenset[str] | None = None

    @classmethod
    def everywhere(cls) -> TenantScope:
        """Every tenant this deployment serves."""
        return cls(None)

    @classmethod
    def only(cls, tenant_ids: Iterable[str]) -> TenantScope:
        """Just these tenants (ids compared in lower case, as Entra writes them)."""
        return cls(frozenset(t.lower() for t in tenant_ids))

    def admits(self, tenant_id: str) -> bool:
        """Whether a DSR of ``tenant_id`` is within the caller's reach."""
        return self.tenants is None or tenant_id.lower() in self.tenants

    @property
    def sole(self) -> str | None:
        """The one tenant the caller is bound to, which a request that names none implies."""
        if self.tenants is not None and len(self.tenants) == 1:
            return next(iter(self.tenants))
        return None


@dataclass(frozen=True)
class Caller:
    """One authenticated caller: how it was identified, its pseudonymous id, its roles."""

    kind: str  # "application" | "user" | "functionKey" | "queue"
    id: str
    roles: frozenset[Role]
    tenant_id: str | None = None
    #: Where the caller may act (its tenant bindings); every tenant unless bound.
    scope: TenantScope = TenantScope()
    #: The Entra group ids of the token's ``groups`` claim (lower case): a binding to a group
    #: binds its members (``dsr_export.domain.bindings``). Never recorded on a DSR.
    groups: frozenset[str] = frozenset()

    def may(self, role: Role) -> bool:
        """Whether the caller holds ``role``."""
        return role in self.roles

    def reaches(self, tenant_id: str) -> bool:
        """Whether the caller may see or act on a DSR of ``tenant_id`` (else: 404)."""
        return self.scope.admits(tenant_id)

    def to_dict(self) -> dict[str, Any]:
        """The caller as a DSR records it (no roles: they are the caller's, not the DSR's)."""
        recorded: dict[str, Any] = {"kind": self.kind, "id": self.id}
        if self.tenant_id:
            recorded["tenantId"] = self.tenant_id
        return recorded


def from_claims(claims: Mapping[str, Any]) -> Caller:
    """The caller an access token's (already validated) claims describe.

    A person's (delegated) token carries a scope (``scp``) and is recorded by its object id
    (``oid``); an application's (app-only) token has none and is recorded by the client id of
    the application (``appid`` in v1.0 tokens, ``azp`` in v2.0). Only our app roles count.
    """
    raw_roles = claims.get("roles", [])
    if not isinstance(raw_roles, list):
        raise NotAuthenticated("the token's roles claim is not a list")
    roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and _is_role(r))
    tenant = _text(claims.get("tid"))
    object_id = _text(claims.get("oid"))
    app_id = _text(claims.get("appid")) or _text(claims.get("azp"))
    delegated = _text(claims.get("scp")) is not None
    tenant = _recordable(tenant) if tenant else None
    groups = _groups(claims.get("groups"))
    if delegated:
        if object_id:
            return Caller("user", _recordable(object_id), roles, tenant, groups=groups)
        raise NotAuthenticated("the token names no user object id")
    if app_id:
        return Caller("application", _recordable(app_id), roles, tenant, groups=groups)
    raise NotAuthenticated("the token names no application id")


def _groups(raw: object) -> frozenset[str]:
    """The group ids of a ``groups`` claim (lower case); anything else in it is ignored. A
    token whose caller is in too many groups carries none (Entra's overage claim instead): such
    a caller is bound by its own id only."""
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(g.lower() for g in raw if isinstance(g, str) and CALLER_ID.fullmatch(g))


def _recordable(caller_id: str) -> str:
    """An id the DSR's submitter record and its evidence can carry: Entra's object and
    application ids are GUIDs, so an id with an address, a URL or a space in it is no caller of
    this tenant (refused here, not found out as a 503 when the evidence refuses it)."""
    if not CALLER_ID.fullmatch(caller_id):
        raise NotAuthenticated("the token's caller id is not an Entra object or application id")
    return caller_id


def from_function_key(key: str, roles: Iterable[Role]) -> Caller:
    """A caller known only by its function key: recorded by the key's fingerprint."""
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Caller("functionKey", f"sha256:{fingerprint}", frozenset(roles))


def parse_roles(text: str) -> frozenset[Role]:
    """``DSR.Submit,DSR.Read`` -> the roles; ValueError naming an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if not _is_role(name)]
    if unknown:
        choices = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown roles {', '.join(unknown)} (roles are {choices})")
    return frozenset(Role(name) for name in names)


def _is_role(value: str) -> bool:
    return value in {role.value for role in Role}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
