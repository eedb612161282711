"""App Service authentication (Entra ID), played by the offline host: the second wall.

In Azure, App Service authentication may stand in front of the app: it validates a caller's
bearer token against the tenant's keys before the request reaches the app, answers 401 to an
invalid one, removes any ``X-MS-CLIENT-PRINCIPAL*`` header the client sent, adds its own with the
token's claims, and passes the ``Authorization`` header on. It also sets
``WEBSITE_AUTH_ENABLED=True`` in the app's environment. The offline host does the same with the
tokens of its local tenant (:class:`devhost.entra.EntraTenant`).

The app reads none of it: it validates the bearer token itself (``dsr_export/adapters/entra.py``),
so that roles hold whether or not this wall is there (``serve --no-platform-auth`` takes it
away, as on a deployment where authentication is off or the flag is not set).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final

import jwt

from devhost.entra import EntraTenant

_OID: Final = "http://schemas.microsoft.com/identity/claims/objectidentifier"
_TID: Final = "http://schemas.microsoft.com/identity/claims/tenantid"
_SCOPE: Final = "http://schemas.microsoft.com/identity/claims/scope"
_NAME: Final = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
PRINCIPAL_PREFIX: Final = "x-ms-client-principal"


class InvalidToken(ValueError):
    """The bearer token is not one this tenant issued for the app (or it expired)."""


class PlatformAuth:
    """The platform's token check in front of the app, for one tenant and registration."""

    def __init__(self, tenant: EntraTenant) -> None:
        self.tenant = tenant

    def principal_headers(self, authorization: str) -> dict[str, str]:
        """The headers App Service adds for a valid ``Authorization: Bearer`` token."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("not a bearer token")
        tenant = self.tenant
        try:
            kid = jwt.get_unverified_header(token.strip()).get("kid")
            key = tenant.public_key(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("unknown signing key")
            claims = jwt.decode(
                token.strip(),
                key,
                algorithms=["RS256"],
                audience=[tenant.client_id, tenant.app_id_uri],
                issuer=[tenant.issuer_v2, tenant.issuer_v1],
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        principal = _principal(claims)
        object_id = str(claims.get("oid") or "")
        return {
            PRINCIPAL_PREFIX: base64.b64encode(json.dumps(principal).encode()).decode(),
            f"{PRINCIPAL_PREFIX}-id": object_id,
            f"{PRINCIPAL_PREFIX}-idp": "aad",
            f"{PRINCIPAL_PREFIX}-name": str(
                claims.get("name") or claims.get("appid") or claims.get("azp") or ""
            ),
        }

    def app_settings(self) -> dict[str, str]:
        """What the platform puts in the app's environment when authentication is on."""
        return {"WEBSITE_AUTH_ENABLED": "True"}


def strip_principal(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers without any client-sent ``X-MS-CLIENT-PRINCIPAL*`` (the platform's own)."""
    return {k: v for k, v in headers.items() if not k.lower().startswith(PRINCIPAL_PREFIX)}


def _principal(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Claims as App Service serialises them: long URIs for the classic types."""
    listed: list[dict[str, str]] = [
        {"typ": "aud", "val": str(claims["aud"])},
        {"typ": "iss", "val": str(claims["iss"])},
        {"typ": _TID, "val": str(claims.get("tid", ""))},
    ]
    if claims.get("oid"):
        listed.append({"typ": _OID, "val": str(claims["oid"])})
    for client in ("appid", "azp"):
        if claims.get(client):
            listed.append({"typ": client, "val": str(claims[client])})
    if claims.get("scp"):
        listed.append({"typ": _SCOPE, "val": str(claims["scp"])})
    if claims.get("name"):
        listed.append({"typ": _NAME, "val": str(claims["name"])})
    listed.extend({"typ": "roles", "val": str(role)} for role in claims.get("roles") or [])
    return {"auth_typ": "aad", "claims": listed, "name_typ": _NAME, "role_typ": "roles"}
