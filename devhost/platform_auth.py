"""App Service authentication (Entra ID), played by the offline host.

In Azure, App Service authentication validates a caller's bearer token before the request
reaches the app, removes any ``X-MS-CLIENT-PRINCIPAL*`` header the client sent, and hands the
app the token's claims in those headers; an invalid token never reaches the app (401). It also
sets ``WEBSITE_AUTH_ENABLED=True`` in the app's environment. The offline host does the same with
tokens of a local tenant, so role checks run for real: ``mint`` issues a caller token with the
app roles asked for (``POST /.auth/devhost/token`` on the host, with a function key), and the
HTTP trigger server turns it into the principal headers.

The tokens are HS256 JWTs with Entra's claim names (``aud``, ``iss``, ``tid``, ``appid`` or
``oid`` + ``scp``, ``roles``); their signature is checked with this host's own key.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt

from dsr_export.domain.callers import CALLER_ID

AUDIENCE: Final = "api://dsr-export-local"
TENANT_ID: Final = "00000000-0000-4000-8000-0000000000aa"
_OID: Final = "http://schemas.microsoft.com/identity/claims/objectidentifier"
_TID: Final = "http://schemas.microsoft.com/identity/claims/tenantid"
_SCOPE: Final = "http://schemas.microsoft.com/identity/claims/scope"
_NAME: Final = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
PRINCIPAL_PREFIX: Final = "x-ms-client-principal"


class InvalidToken(ValueError):
    """The bearer token is not one this tenant issued for the app (or it expired)."""


class PlatformAuth:
    """The local tenant's token issuer and the platform's token check, in one."""

    def __init__(self, *, audience: str = AUDIENCE, tenant_id: str = TENANT_ID) -> None:
        self.audience = audience
        self.tenant_id = tenant_id
        self.issuer = f"https://sts.windows.net/{tenant_id}/"
        self._key = secrets.token_bytes(32)

    def mint(
        self,
        roles: Iterable[str],
        *,
        kind: str = "application",
        subject_id: str | None = None,
        lifetime: timedelta = timedelta(hours=1),
        now: datetime | None = None,
    ) -> str:
        """A caller token: an application (``appid``) or a person (``oid`` with a scope)."""
        issued = now or datetime.now(UTC)
        subject = subject_id or str(uuid.uuid4())
        if not isinstance(subject, str) or not CALLER_ID.fullmatch(subject):
            # Entra issues GUIDs; an id with an address in it would only be refused later,
            # by the app, as a caller it cannot record.
            raise ValueError("id must be letters, digits and . _ - (an Entra id is a GUID)")
        claims: dict[str, Any] = {
            "aud": self.audience,
            "iss": self.issuer,
            "tid": self.tenant_id,
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "exp": int((issued + lifetime).timestamp()),
            "roles": sorted(set(roles)),
        }
        if kind == "user":
            claims.update(oid=subject, scp="user_impersonation", name="Local Operator")
        elif kind == "application":
            claims.update(appid=subject, oid=str(uuid.uuid4()))
        else:
            raise ValueError(f"kind must be application or user, not {kind!r}")
        return jwt.encode(claims, self._key, algorithm="HS256")

    def principal_headers(self, authorization: str) -> dict[str, str]:
        """The headers App Service adds for a valid ``Authorization: Bearer`` token."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("not a bearer token")
        try:
            claims = jwt.decode(
                token.strip(),
                self._key,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
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
            f"{PRINCIPAL_PREFIX}-name": str(claims.get("name") or claims.get("appid") or ""),
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
    if claims.get("appid"):
        listed.append({"typ": "appid", "val": str(claims["appid"])})
    if claims.get("scp"):
        listed.append({"typ": _SCOPE, "val": str(claims["scp"])})
    if claims.get("name"):
        listed.append({"typ": _NAME, "val": str(claims["name"])})
    listed.extend({"typ": "roles", "val": str(role)} for role in claims.get("roles") or [])
    return {"auth_typ": "aad", "claims": listed, "name_typ": _NAME, "role_typ": "roles"}
