"""A local managed-identity endpoint speaking App Service's protocol (api-version 2019-08-01).

With ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` pointing here, the production credential
code (``ManagedIdentityCredential`` / ``DefaultAzureCredential``) runs unchanged offline. The
tokens are JWT-shaped so that Azurite's ``--oauth basic`` (which checks ``aud``, ``iss`` and
lifetime, not the signature) and the Graph simulator accept them.

One resource is different: ``api://AzureADTokenExchange``, the token a managed identity presents
as a federated identity credential (``TENANCY=multi``). Entra checks that one's signature, so
once :meth:`ManagedIdentityEndpoint.federate` has named the local Entra's signer, it is an RS256
v2.0 token from the identity's tenant (issuer ``{authority}/{tenant}/v2.0``, subject the
identity's object id), as Azure issues it.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import jwt

from devhost._service import Service

__all__ = [
    "DEFAULT_ROLES",
    "GRAPH_RESOURCE",
    "STORAGE_RESOURCE",
    "ManagedIdentityEndpoint",
]

GRAPH_RESOURCE = "https://graph.microsoft.com"
STORAGE_RESOURCE = "https://storage.azure.com"
DEFAULT_ROLES: Mapping[str, Sequence[str]] = {GRAPH_RESOURCE: ("User.Export.All", "User.Read.All")}

TOKEN_EXCHANGE_RESOURCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience
_API_VERSION = "2019-08-01"
_PATH = "/msi/token"


class ManagedIdentityEndpoint(Service):
    """The identity of one function app: one tenant, one service principal, fixed app roles.

    ``roles`` maps a resource (``aud``) to the application permissions granted on it, which is
    how admin consent shows up in real app-only tokens; a resource without an entry gets a
    token without ``roles`` (Azure RBAC, as for storage, is not carried in the token).
    """

    def __init__(
        self,
        *,
        tenant_id: str = "00000000-0000-4000-8000-000000000001",
        client_id: str = "00000000-0000-4000-8000-000000000002",
        object_id: str = "00000000-0000-4000-8000-000000000003",
        roles: Mapping[str, Sequence[str]] = DEFAULT_ROLES,
        token_lifetime: timedelta = timedelta(hours=24),
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.object_id = object_id
        self._roles = {_normalise(resource): tuple(r) for resource, r in roles.items()}
        self._lifetime = token_lifetime
        self._header_secret = secrets.token_urlsafe(24)
        self._signing_key = secrets.token_bytes(32)
        self._issued = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._federation: tuple[Callable[[Mapping[str, Any]], str], str] | None = None

    def federate(self, sign: Callable[[Mapping[str, Any]], str], issuer: str) -> None:
        """Issue ``api://AzureADTokenExchange`` tokens signed by ``sign`` (the local Entra's
        key) under ``issuer`` (the identity's tenant's v2.0 issuer), as Entra issues them."""
        self._federation = (sign, issuer)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("identity endpoint already started")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="identity-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- what clients need -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("identity endpoint is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}{_PATH}"

    def env(self) -> dict[str, str]:
        """The two variables App Service sets; ``ManagedIdentityCredential`` needs nothing else."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self._header_secret}

    @property
    def issued_count(self) -> int:
        """Tokens handed out so far: lets tests see whether clients cache tokens."""
        with self._lock:
            return self._issued

    # -- protocol --------------------------------------------------------------------------

    def _answer(self, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
        """App Service's answer to one token request: (status, JSON body)."""
        if header is None:
            return 400, _error(400, "Unable to authorize request: X-IDENTITY-HEADER is missing.")
        if not secrets.compare_digest(header, self._header_secret):
            return 401, _error(401, "Unable to authorize request: X-IDENTITY-HEADER is invalid.")
        parts = urlsplit(path)
        if parts.path != _PATH:
            return 404, _error(404, "Not found.")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if query.get("api-version") != _API_VERSION:
            return 400, _error(400, f"api-version must be {_API_VERSION}.")
        resource = query.get("resource", "").strip()
        if not resource:
            return 400, _error(400, "Required query parameter 'resource' is missing.")
        if query.get("client_id", self.client_id).lower() != self.client_id.lower() or (
            query.get("object_id", self.object_id).lower() != self.object_id.lower()
        ):
            return 400, _error(400, "Unable to load the proper Managed Identity.")
        now = datetime.now(UTC)
        expires = now + self._lifetime
        with self._lock:
            self._issued += 1
        return 200, {
            "access_token": self._token(resource, now, expires),
            "expires_on": str(int(expires.timestamp())),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": self.client_id,
        }

    def _token(self, resource: str, now: datetime, expires: datetime) -> str:
        if self._federation is not None and _normalise(resource) == TOKEN_EXCHANGE_RESOURCE:
            sign, issuer = self._federation
            return sign(
                {
                    "aud": TOKEN_EXCHANGE_RESOURCE,
                    "iss": issuer,
                    "sub": self.object_id,
                    "oid": self.object_id,
                    "azp": self.client_id,
                    "tid": self.tenant_id,
                    "iat": int(now.timestamp()),
                    "nbf": int(now.timestamp()),
                    "exp": int(expires.timestamp()),
                    "uti": uuid.uuid4().hex,
                    "ver": "2.0",
                }
            )
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(now.timestamp()),
            "nbf": int((now - timedelta(minutes=5)).timestamp()),
            "exp": int(expires.timestamp()),
            "tid": self.tenant_id,
            "oid": self.object_id,
            "sub": self.object_id,
            "appid": self.client_id,
            "appidacr": "2",
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        roles = self._roles.get(_normalise(resource))
        if roles:
            claims["roles"] = list(roles)
        return jwt.encode(claims, self._signing_key, algorithm="HS256")


def _normalise(resource: str) -> str:
    return resource.rstrip("/")


def _error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}


def _handler_for(endpoint: ManagedIdentityEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_GET(self) -> None:
            status, body = endpoint._answer(self.path, self.headers.get("X-IDENTITY-HEADER"))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request line is harmless, but test output stays readable."""

    return Handler
