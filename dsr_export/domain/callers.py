"""Who is calling, and what they may do: app roles, and the caller recorded on a DSR.

In Azure, App Service authentication (Entra ID) sits in front of the app: it validates the
caller's token and hands the app its claims in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON), after
removing any such header the client sent. The app trusts that header only when the platform
says authentication is on, and checks the app roles in it (``DSR.Submit``, ``DSR.Read``,
``DSR.Manage``) route by route.

A caller is recorded by pseudonymous ids only: the application id of a service, or the object
id of a person, never a name or UPN. Ticketing systems that can send nothing but a static
header (Jira automation) may use a function key instead, if ``AUTH_FUNCTION_KEY_ROLES`` grants
key holders roles; such a caller is recorded by a fingerprint of its key (the platform does not
tell the app the key's name; an administrator can match the fingerprint, see docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
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


#: Claim types as App Service writes them (long URIs for the classic ones).
_OBJECT_ID_CLAIMS: Final = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_TENANT_CLAIMS: Final = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
_APP_ID_CLAIMS: Final = ("appid", "azp")
_SCOPE_CLAIMS: Final = ("http://schemas.microsoft.com/identity/claims/scope", "scp")


class NotAuthenticated(ValueError):
    """The request carries no identity the app accepts; the message says why."""


@dataclass(frozen=True)
class Caller:
    """One authenticated caller: how it was identified, its pseudonymous id, its roles."""

    kind: str  # "application" | "user" | "functionKey" | "queue"
    id: str
    roles: frozenset[Role]
    tenant_id: str | None = None

    def may(self, role: Role) -> bool:
        """Whether the caller holds ``role``."""
        return role in self.roles

    def to_dict(self) -> dict[str, Any]:
        """The caller as a DSR records it (no roles: they are the caller's, not the DSR's)."""
        recorded: dict[str, Any] = {"kind": self.kind, "id": self.id}
        if self.tenant_id:
            recorded["tenantId"] = self.tenant_id
        return recorded


def from_principal(header: str) -> Caller:
    """The caller described by an ``X-MS-CLIENT-PRINCIPAL`` header."""
    try:
        decoded = json.loads(base64.b64decode(header, validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise NotAuthenticated("the client principal is not readable") from None
    if not isinstance(decoded, Mapping) or not isinstance(decoded.get("claims"), list):
        raise NotAuthenticated("the client principal carries no claims")
    role_type = str(decoded.get("role_typ") or "roles")
    claims: list[tuple[str, str]] = [
        (str(claim.get("typ")), str(claim.get("val")))
        for claim in decoded["claims"]
        if isinstance(claim, Mapping)
    ]
    roles = frozenset(Role(val) for typ, val in claims if typ == role_type and _is_role(val))
    object_id = _first(claims, _OBJECT_ID_CLAIMS)
    app_id = _first(claims, _APP_ID_CLAIMS)
    tenant = _first(claims, _TENANT_CLAIMS)
    # An app-only token has no scope; a person's (delegated) token does.
    delegated = _first(claims, _SCOPE_CLAIMS) is not None
    if delegated and object_id:
        return Caller("user", _recordable(object_id), roles, _recordable_tenant(tenant))
    if app_id:
        return Caller("application", _recordable(app_id), roles, _recordable_tenant(tenant))
    if object_id:
        return Caller("user", _recordable(object_id), roles, _recordable_tenant(tenant))
    raise NotAuthenticated("the client principal names no application or user id")


def _recordable(caller_id: str) -> str:
    """An id the DSR's submitter record and its evidence can carry: Entra's object and
    application ids are GUIDs, so a principal id with an address, a URL or a space in it is no
    caller of this tenant (refused here, not found out as a 503 when the evidence refuses it)."""
    if not CALLER_ID.fullmatch(caller_id):
        raise NotAuthenticated("the client principal's id is not an Entra object or application id")
    return caller_id


def _recordable_tenant(tenant: str | None) -> str | None:
    return _recordable(tenant) if tenant else None


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


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val:
                return val
    return None
