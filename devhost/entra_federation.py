"""The local Entra's token endpoint for a multi-tenant app with a federated identity credential.

What Entra does when an app signs in with a client assertion (OAuth 2.0 client credentials,
RFC 6749 section 4.4, with client authentication by a JWT, RFC 7523 section 2.2, as the
Microsoft identity platform documents for certificate and federated credentials):

``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
``scope={resource}/.default``, ``client_assertion_type=urn:ietf:params:oauth:client-assertion-
type:jwt-bearer`` and ``client_assertion``. The assertion here is the managed identity's token
for ``api://AzureADTokenExchange``; Entra accepts it when a federated identity credential of
the app names its issuer and subject exactly and its audience is one of the credential's
audiences (Microsoft Graph, ``federatedIdentityCredential``: "issuer", "subject",
"audiences"), its signature verifies against the issuer's published keys and it is within its
lifetime. The app then gets a token in ``{tenant}`` only if the tenant has the app's service
principal, which admin consent creates; the token's ``roles`` are the application permissions
granted there.

The error codes are Entra's (``AADSTS`` numbers, documented in "Microsoft Entra authentication
and authorization error codes"), so that an operator reading the app's log offline reads what
Azure would say:

- ``AADSTS90002`` tenant not found; ``AADSTS700016`` the app is not in the tenant's directory
  (not consented, or consent revoked); ``AADSTS70021`` no federated identity record matches
  the assertion; ``AADSTS50013`` the assertion's signature is invalid; ``AADSTS700024`` the
  assertion is outside its time range; ``AADSTS7000218`` no client assertion;
  ``AADSTS70011`` the scope is not ``{resource}/.default``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_EXCHANGE_AUDIENCE: Final = "api://AzureADTokenExchange"  # noqa: S105 - an audience
JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The Graph application permissions admin consent grants in a customer tenant.
GRAPH_PERMISSIONS: Final = ("User.Export.All", "User.Read.All")
#: Seconds Entra's app-only tokens live (about an hour).
TOKEN_SECONDS: Final = 3599
_SKEW: Final = 300


@dataclass(frozen=True)
class FederatedCredential:
    """One federated identity credential of an app: whose tokens it trusts."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)
    name: str = "dsr-export-identity"


@dataclass
class MultiTenantApp:
    """A multi-tenant app registration: its credentials, and the tenants that consented."""

    client_id: str
    home_tenant: str
    credentials: list[FederatedCredential] = field(default_factory=list)
    #: Tenant id -> the application permissions its administrator granted.
    consents: dict[str, tuple[str, ...]] = field(default_factory=dict)


class OAuthError(Exception):
    """An OAuth error answer: (status, error, AADSTS code, description)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self, tenant: str) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
            "tenant": tenant,
        }


class TokenService:
    """Exchanges federated assertions for app-only tokens, tenant by tenant."""

    def __init__(
        self,
        *,
        known_tenant: Callable[[str], bool],
        public_key: Callable[[str], rsa.RSAPublicKey | None],
        sign: Callable[[Mapping[str, Any]], str],
    ) -> None:
        self._known_tenant = known_tenant
        self._public_key = public_key
        self._sign = sign
        self._apps: dict[str, MultiTenantApp] = {}
        self._lock = threading.Lock()
        self.issued = 0

    # -- the registration, as an administrator sets it up -----------------------------------

    def register(self, app: MultiTenantApp) -> MultiTenantApp:
        with self._lock:
            self._apps[app.client_id] = app
        return app

    def app(self, client_id: str) -> MultiTenantApp | None:
        with self._lock:
            return self._apps.get(client_id)

    def consent(self, client_id: str, tenant_id: str, roles: Iterable[str]) -> None:
        """The tenant's administrator grants the app ``roles`` (admin consent)."""
        with self._lock:
            self._apps[client_id].consents[tenant_id.lower()] = tuple(roles)

    def revoke(self, client_id: str, tenant_id: str) -> None:
        """The tenant's administrator deletes the app's service principal: no more tokens."""
        with self._lock:
            self._apps[client_id].consents.pop(tenant_id.lower(), None)

    # -- the protocol -----------------------------------------------------------------------

    def token(self, tenant: str, body: bytes) -> dict[str, Any]:
        """The token answer, or :class:`OAuthError`."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not self._known_tenant(tenant):
            raise OAuthError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(
                400, "unsupported_grant_type", 70003, "The app only supports client_credentials."
            )
        client_id = form.get("client_id", "").lower()
        app = self.app(client_id)
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise OAuthError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        resource = _resource(form.get("scope", ""))
        if app is None:
            raise _not_in_directory(client_id, tenant)
        self._check_assertion(app, form["client_assertion"])
        with self._lock:
            roles = app.consents.get(tenant.lower())
        if roles is None:
            raise _not_in_directory(client_id, tenant)
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_SECONDS,
            "tid": tenant,
            "appid": client_id,
            "appidacr": "2",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
            "roles": list(roles),
        }
        with self._lock:
            self.issued += 1
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "ext_expires_in": TOKEN_SECONDS,
            "access_token": self._sign(claims),
        }

    def _check_assertion(self, app: MultiTenantApp, assertion: str) -> None:
        """Signature, federated credential match (issuer, subject, audience), lifetime."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError(
                400, "invalid_request", 50027, "JWT token is invalid or malformed."
            ) from None
        issuer, subject = unverified.get("iss"), unverified.get("sub")
        audiences = unverified.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        match = [
            c
            for c in app.credentials
            if c.issuer == issuer and c.subject == subject and set(c.audiences) & set(audiences)
        ]
        if not match:
            raise OAuthError(
                400,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. "
                f"Assertion Audience: '{','.join(audiences)}'.",
            )
        key = self._public_key(str(header.get("kid", "")))
        if key is None or header.get("alg") != "RS256":
            raise OAuthError(401, "invalid_client", 50013, "Assertion failed signature validation.")
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=list(match[0].audiences),
                issuer=match[0].issuer,
                leeway=_SKEW,
                options={"require": ["exp", "iat", "nbf"]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise OAuthError(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from None
        except jwt.PyJWTError:
            raise OAuthError(
                401, "invalid_client", 50013, "Assertion failed signature validation."
            ) from None


def _resource(scope: str) -> str:
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise OAuthError(
            400,
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid: the client "
            "credentials flow takes one scope, {resource}/.default.",
        )
    return scopes[0].removesuffix("/.default")


def _not_in_directory(client_id: str, tenant: str) -> OAuthError:
    return OAuthError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant.",
    )
