"""Entra ID for one local tenant: OpenID metadata, signing keys, caller tokens, key rotation.

The app validates callers' bearer tokens itself against its tenant's published keys
(``dsr_export/adapters/entra.py``). Offline, this plays the tenant: it serves, over the offline
host's TLS, what Entra serves at ``https://login.microsoftonline.com`` for a tenant, at the
authority the app's settings point at (``AUTH_AUTHORITY_HOST``):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (issuer ``{authority}/{tenant}/v2.0``)
  and ``GET /{tenant}/.well-known/openid-configuration`` (the v1.0 one, issuer
  ``https://sts.windows.net/{tenant}/``), each naming the key set;
- ``GET /{tenant}/discovery/v2.0/keys`` and ``GET /{tenant}/discovery/keys``: the JWKS, RSA
  keys with ``kid``, ``use: sig``, ``n``, ``e``, as Entra publishes them.

Tokens are RS256 access tokens with Entra's claims (v2.0 by default: ``aud`` the client id,
``azp``; v1.0: ``aud`` the Application ID URI, ``appid``), minted with the roles asked for.
:meth:`EntraTenant.rotate` rolls the signing key over as Entra does: new tokens are signed with a
new key, which the key set publishes from then on; the old key stays published for a grace
(``keep_previous``, the default) or is dropped at once. The app never learns it is offline: only
its settings (:meth:`EntraTenant.app_settings`) name this authority.

It also plays the customer tenants of ``TENANCY=multi`` (docs/devhost.md, "Several tenants"):
the same key set signs for every tenant it knows (Entra's signing keys are common to all
tenants), each tenant has its own metadata and issuer, and ``POST /{tenant}/oauth2/v2.0/token``
takes the client credentials grant with a client assertion (:mod:`devhost.entra_federation`):
the multi-tenant app presents the managed identity's token as its federated credential and gets
an app-only token in a tenant only where that tenant consented (:meth:`EntraTenant.consent`,
:meth:`EntraTenant.revoke`).

The private keys are kept in a state file (owner-only), so a restarted host keeps its tenant,
as Azure's tenant outlives a worker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost._service import Service
from devhost._state import read_json, write_atomically
from devhost.entra_federation import (
    GRAPH_PERMISSIONS,
    FederatedCredential,
    MultiTenantApp,
    OAuthError,
    TokenService,
)
from devhost.https_server import HttpsServer, Reply
from devhost.tls import TlsFiles
from dsr_export.domain.callers import CALLER_ID

__all__ = [
    "APP_ID_URI",
    "CLIENT_ID",
    "CUSTOMER_TENANTS",
    "MULTI_TENANT_CLIENT_ID",
    "TENANT_ID",
    "EntraTenant",
]

TENANT_ID: Final = "00000000-0000-4000-8000-0000000000aa"
#: The app's registration in the local tenant: its client id and Application ID URI.
CLIENT_ID: Final = "00000000-0000-4000-8000-0000000000ab"
APP_ID_URI: Final = "api://dsr-export-local"
#: The customer tenants a multi-tenant deployment serves offline (docs/devhost.md): the first two
#: consent when the stack starts, the third never does until a test says so.
CUSTOMER_TENANTS: Final = (
    "00000000-0000-4000-8000-0000000000c1",
    "00000000-0000-4000-8000-0000000000c2",
    "00000000-0000-4000-8000-0000000000c3",
)
#: The multi-tenant app registration (``MULTI_TENANT_CLIENT_ID``), homed in the identity's tenant.
MULTI_TENANT_CLIENT_ID: Final = "00000000-0000-4000-8000-0000000000ac"
V1_ISSUER_HOST: Final = "https://sts.windows.net"
KEYS_FILE: Final = "entra-keys.json"
_KEY_BITS: Final = 2048


class _Key:
    """One RSA signing key and its ``kid`` (a thumbprint of the public key, as Entra's)."""

    def __init__(self, private: rsa.RSAPrivateKey) -> None:
        self.private = private
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64(hashlib.sha256(der).digest()[:20])

    @classmethod
    def generate(cls) -> _Key:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS))

    @classmethod
    def from_pem(cls, pem: str) -> _Key:
        loaded = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("not an RSA key")
        return cls(loaded)

    def pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }


class EntraTenant(Service):
    """One local Entra tenant with one app registration, served over HTTPS on loopback."""

    def __init__(
        self,
        tls: TlsFiles,
        *,
        tenant_id: str = TENANT_ID,
        client_id: str = CLIENT_ID,
        app_id_uri: str = APP_ID_URI,
        port: int = 0,
        state_file: Path | None = None,
        other_tenants: tuple[str, ...] = CUSTOMER_TENANTS,
    ) -> None:
        self.tenant_id = tenant_id
        self.tenants = {tenant_id, *other_tenants}
        self.client_id = client_id
        self.app_id_uri = app_id_uri
        self._tls = tls
        self._port = port
        self._state_file = state_file
        self._lock = threading.Lock()
        self._signing, self._published = self._load_keys()
        self._server: HttpsServer | None = None
        self.requests: list[str] = []
        self.federation = TokenService(
            known_tenant=lambda tenant: tenant in self.tenants,
            public_key=self.public_key,
            sign=self.sign,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("Entra tenant already started")
        self._server = HttpsServer(self._tls, self._handle, port=self._port).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    # -- what the app and callers need -----------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("Entra tenant is not running")
        return self._server.port

    @property
    def authority(self) -> str:
        """What ``https://login.microsoftonline.com`` is in Azure."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def issuer_v2(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0"

    @property
    def issuer_v1(self) -> str:
        return f"{V1_ISSUER_HOST}/{self.tenant_id}/"

    def app_settings(self) -> dict[str, str]:
        """The app settings that point the app at this tenant (the Bicep's, in Azure)."""
        return {
            "AUTH_AUTHORITY_HOST": self.authority,
            "AUTH_TENANT_ID": self.tenant_id,
            "AUTH_CLIENT_ID": self.client_id,
            "AUTH_APP_ID_URI": self.app_id_uri,
        }

    @property
    def signing_kid(self) -> str:
        with self._lock:
            return self._signing.kid

    def jwks(self) -> dict[str, Any]:
        """The published key set (the signing key first)."""
        with self._lock:
            return {"keys": [key.jwk() for key in self._published]}

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """The published key ``kid`` names (App Service authentication reads Entra's keys)."""
        with self._lock:
            found = next((key for key in self._published if key.kid == kid), None)
        return found.private.public_key() if found is not None else None

    def rotate(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on; the old one stays published or goes. The new kid."""
        new = _Key.generate()
        with self._lock:
            previous = [self._signing] if keep_previous else []
            self._signing, self._published = new, [new, *previous]
            self._save_keys()
        return new.kid

    def mint(
        self,
        roles: Iterable[str],
        *,
        kind: str = "application",
        subject_id: str | None = None,
        version: str = "2.0",
        lifetime: timedelta = timedelta(hours=1),
        now: datetime | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An access token for the app: an application's (app-only) or a person's (delegated).

        ``claims`` adds or replaces claims (tests make wrong tokens with it).
        """
        issued = now or datetime.now(UTC)
        subject = subject_id or str(uuid.uuid4())
        if not isinstance(subject, str) or not CALLER_ID.fullmatch(subject):
            # Entra issues GUIDs; an id with an address in it would only be refused later, by
            # the app, as a caller it cannot record (review note I-6).
            raise ValueError("id must be letters, digits and . _ - (an Entra id is a GUID)")
        body: dict[str, Any] = {
            "aud": self.client_id if version == "2.0" else self.app_id_uri,
            "iss": self.issuer_v2 if version == "2.0" else self.issuer_v1,
            "tid": self.tenant_id,
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "exp": int((issued + lifetime).timestamp()),
            "ver": version,
            "uti": uuid.uuid4().hex,
            "roles": sorted(set(roles)),
        }
        client = "azp" if version == "2.0" else "appid"
        if kind == "user":
            body.update(oid=subject, sub=subject, scp="user_impersonation", name="Local Operator")
            body[client] = str(uuid.uuid4())
        elif kind == "application":
            body.update({client: subject, "oid": str(uuid.uuid4()), "idtyp": "app"})
            body["sub"] = body["oid"]
        else:
            raise ValueError(f"kind must be application or user, not {kind!r}")
        body.update(claims or {})
        return self.sign(body)

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
        """``claims`` signed RS256 with the current signing key (or the published key ``kid``)."""
        with self._lock:
            key = next((k for k in self._published if k.kid == kid), None) if kid else None
            key = key or self._signing
        return jwt.encode(dict(claims), key.private, algorithm="RS256", headers={"kid": key.kid})

    # -- the multi-tenant app (TENANCY=multi) ------------------------------------------------

    def issuer_of(self, tenant_id: str) -> str:
        """A tenant's v2.0 issuer: what a managed identity's exchange token names as ``iss``."""
        return f"{self.authority}/{tenant_id}/v2.0"

    def register_multi_tenant_app(
        self,
        *,
        home_tenant: str,
        identity_object_id: str,
        client_id: str = MULTI_TENANT_CLIENT_ID,
    ) -> MultiTenantApp:
        """The app registration of docs/deploy.md: multi-tenant, one federated identity
        credential trusting the managed identity (issuer its tenant's v2.0 issuer, subject its
        object id, audience ``api://AzureADTokenExchange``), consented in its home tenant."""
        self.tenants.add(home_tenant)
        app = MultiTenantApp(
            client_id,
            home_tenant,
            [FederatedCredential(self.issuer_of(home_tenant), identity_object_id)],
            {home_tenant: GRAPH_PERMISSIONS},
        )
        return self.federation.register(app)

    def consent(
        self,
        tenant_id: str,
        roles: tuple[str, ...] = GRAPH_PERMISSIONS,
        *,
        client_id: str = MULTI_TENANT_CLIENT_ID,
    ) -> None:
        """The tenant's administrator follows the consent link and grants ``roles``."""
        self.tenants.add(tenant_id)
        self.federation.consent(client_id, tenant_id, roles)

    def revoke(self, tenant_id: str, *, client_id: str = MULTI_TENANT_CLIENT_ID) -> None:
        """The tenant's administrator removes the app: its tokens there stop at once (new ones;
        a token already issued lives out its hour, as in Azure)."""
        self.federation.revoke(client_id, tenant_id)

    # -- protocol --------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        path = urlsplit(target).path.rstrip("/")
        self.requests.append(path)
        tenant, _, rest = path.lstrip("/").partition("/")
        if method == "POST" and rest == "oauth2/v2.0/token":
            return self._token(tenant, body)
        if method != "GET":
            return _json(405, {"error": "invalid_request"})
        documents = {
            "v2.0/.well-known/openid-configuration": lambda: self._configuration("2.0", tenant),
            ".well-known/openid-configuration": lambda: self._configuration("1.0", tenant),
            "discovery/v2.0/keys": self.jwks,
            "discovery/keys": self.jwks,
        }
        found = documents.get(rest)
        if found is None or tenant not in self.tenants:
            return _json(404, {"error": "invalid_tenant"})
        return _json(200, found())

    def _token(self, tenant: str, body: bytes) -> Reply:
        try:
            return _json(200, self.federation.token(tenant, body))
        except OAuthError as error:
            return _json(error.status, error.body(tenant))

    def _configuration(self, version: str, tenant: str) -> dict[str, Any]:
        base = f"{self.authority}/{tenant}"
        v2 = version == "2.0"
        return {
            "issuer": self.issuer_of(tenant) if v2 else f"{V1_ISSUER_HOST}/{tenant}/",
            "authorization_endpoint": f"{base}/oauth2/{'v2.0/' if v2 else ''}authorize",
            "token_endpoint": f"{base}/oauth2/{'v2.0/' if v2 else ''}token",
            "jwks_uri": f"{base}/discovery/{'v2.0/' if v2 else ''}keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
        }

    # -- state -----------------------------------------------------------------------------

    def _load_keys(self) -> tuple[_Key, list[_Key]]:
        data = (
            read_json(self._state_file, what="the local tenant's signing keys")
            if (self._state_file is not None)
            else None
        )
        if isinstance(data, dict) and isinstance(data.get("published"), list):
            published = [_Key.from_pem(str(pem)) for pem in data["published"]]
            if published:
                return published[0], published
        key = _Key.generate()
        self._signing, self._published = key, [key]
        self._save_keys()
        return key, [key]

    def _save_keys(self) -> None:
        if self._state_file is None:
            return
        data = {"published": [key.pem() for key in self._published]}
        write_atomically(self._state_file, json.dumps(data), private=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json(status: int, body: Any) -> Reply:
    payload = json.dumps(body).encode()
    return Reply(status, payload, {"Content-Type": "application/json; charset=utf-8"})
