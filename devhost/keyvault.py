"""A local Key Vault speaking the REST protocol ``azure-keyvault-keys`` and
``azure-keyvault-secrets`` use.

The app signs package receipts with ``KeyClient`` and ``CryptographyClient``, and reads each
tenant's callback signing secret with ``SecretClient`` (``TENANCY=multi``); offline they run
unchanged against this vault, and only settings point them here. What the real service does and
the SDK relies on is played for real:

- **Challenge-based authentication**: a request without a valid bearer token gets a 401 with
  ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
  resource="https://vault.azure.net"``; the SDK then asks its credential (the local managed
  identity endpoint) for a ``https://vault.azure.net`` token and repeats the request. Tokens are
  checked for audience and lifetime (not signature, as the Graph simulator does).
- **Azure RBAC on data actions**: each principal (the token's ``oid``) holds data actions on the
  keys (``read``: get and list versions; ``sign``; ``create``; ``rotate``); anything else is
  Key Vault's 403 ``ForbiddenByRbac``, naming the action.
- **Keys**: EC P-256 (and P-384/P-521) keys with versions; ``create`` on an existing name and
  ``rotate`` both add a version; ``sign`` takes a base64url digest and answers the raw
  ``r || s`` signature, as Key Vault does (not DER). api-version 7.4 and 7.5 only.
- **Secrets**: ``GET /secrets/{name}[/{version}]`` answers the secret bundle (``value``,
  ``id`` with its version) to a principal holding ``getSecret`` (Key Vault Secrets User);
  :meth:`KeyVaultEmulator.set_secret` adds a version, as an operator's ``az keyvault secret
  set`` does. Offline test secrets only.

**Why a vault-like host name and a proxy.** The SDK checks that the challenge's resource
(``vault.azure.net``) is a parent domain of the vault's host name, and that check would refuse
``https://127.0.0.1:PORT`` (the only other way round it is ``verify_challenge_resource=False``,
a weaker production client). So the vault gets a real-looking name, ``VAULT_HOST`` under
``vault.azure.net``, on the default port, and the offline host's processes reach it through a
forward proxy (``HTTPS_PROXY``, as a corporate network would have; loopback stays direct through
``NO_PROXY``) that tunnels that one name to this server and refuses every other destination.
The TLS certificate of the offline host names it too, and only the offline host's processes
trust that certificate (``REQUESTS_CA_BUNDLE``). Nothing reaches the real vault.azure.net.

Keys (private halves included) persist in a JSON state file, so receipts signed before a host
restart still verify after it. Offline test keys only: never put a real key here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import selectors
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
)

from devhost._service import Service
from devhost._state import read_json, unreadable, write_atomically
from devhost.https_server import HttpsServer, Reply
from devhost.tls import VAULT_HOST, TlsFiles

__all__ = [
    "API_VERSIONS",
    "APP_ACTIONS",
    "KEYVAULT_RESOURCE",
    "RECEIPT_KEY_NAME",
    "VAULT_HOST",
    "KeyVaultEmulator",
    "VaultProxy",
]

KEYVAULT_RESOURCE: Final = "https://vault.azure.net"
VAULT_URL: Final = f"https://{VAULT_HOST}"
RECEIPT_KEY_NAME: Final = "receipt-signing"
API_VERSIONS: Final = frozenset({"7.4", "7.5"})
#: What infra grants the app on the receipt key: read (get, list versions) and sign, no more.
APP_ACTIONS: Final = frozenset({"read", "sign"})
_ACTION_NAMES: Final = {
    "read": "Microsoft.KeyVault/vaults/keys/read",
    "sign": "Microsoft.KeyVault/vaults/keys/sign/action",
    "create": "Microsoft.KeyVault/vaults/keys/create/action",
    "rotate": "Microsoft.KeyVault/vaults/keys/rotate/action",
    "getSecret": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
}
_CURVES: Final[dict[str, tuple[ec.EllipticCurve, str, int, hashes.HashAlgorithm]]] = {
    "P-256": (ec.SECP256R1(), "ES256", 32, hashes.SHA256()),
    "P-384": (ec.SECP384R1(), "ES384", 48, hashes.SHA384()),
    "P-521": (ec.SECP521R1(), "ES512", 66, hashes.SHA512()),
}
_CLOCK_SKEW = 300


@dataclass
class _Version:
    version: str
    private_key: ec.EllipticCurvePrivateKey
    crv: str
    created: int
    key_ops: list[str]
    enabled: bool = True

    def to_state(self) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "version": self.version,
            "pem": pem.decode("ascii"),
            "crv": self.crv,
            "created": self.created,
            "keyOps": self.key_ops,
            "enabled": self.enabled,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> _Version:
        key = serialization.load_pem_private_key(data["pem"].encode("ascii"), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an EC key")
        return cls(
            version=str(data["version"]),
            private_key=key,
            crv=str(data["crv"]),
            created=int(data["created"]),
            key_ops=[str(op) for op in data["keyOps"]],
            enabled=bool(data["enabled"]),
        )


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    principal: str = ""


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@dataclass
class KeyVaultEmulator(Service):
    """The keys endpoint of one vault, on loopback over TLS; see the module docstring.

    ``grants`` maps a principal's object id to its data actions (``read``, ``sign``,
    ``create``, ``rotate``); :meth:`grant` and :meth:`revoke` change them while it runs, as a
    role assignment does. ``clock`` stamps versions' ``created`` (the offline host passes its
    fast clock, so retention reads the same time as the app).
    """

    tls: TlsFiles
    state_file: Path | None = None
    grants: dict[str, set[str]] = field(default_factory=dict)
    tenant_id: str = "00000000-0000-4000-8000-000000000001"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    vault_url: str = VAULT_URL

    def __post_init__(self) -> None:
        self._keys: dict[str, list[_Version]] = {}
        #: Secret versions by name, oldest first: (version, value).
        self._secrets: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._server: HttpsServer | None = None
        self.requests: list[tuple[str, str, int]] = []
        self._load()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = HttpsServer(self.tls, self._handle).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local Key Vault is not running")
        return self._server.port

    # -- what the offline host and tests do as the vault's owner ------------------------------

    def grant(self, principal: str, actions: Iterable[str]) -> None:
        with self._lock:
            self.grants.setdefault(principal, set()).update(actions)

    def revoke(self, principal: str, actions: Iterable[str]) -> None:
        with self._lock:
            self.grants.get(principal, set()).difference_update(actions)

    def ensure_key(self, name: str = RECEIPT_KEY_NAME, crv: str = "P-256") -> str:
        """The key's current versioned id, creating the key if it does not exist yet."""
        with self._lock:
            if not self._keys.get(name):
                self._new_version(name, crv, ["sign", "verify"])
            return self._kid(name, self._keys[name][-1].version)

    def rotate(self, name: str = RECEIPT_KEY_NAME) -> str:
        """A new version of ``name`` (same curve and operations); its versioned id."""
        with self._lock:
            current = self._current(name)
            return self._kid(name, self._new_version(name, current.crv, current.key_ops).version)

    def disable(self, name: str, version: str) -> None:
        with self._lock:
            self._find(name, version).enabled = False
            self._save()

    def set_secret(self, name: str, value: str) -> str:
        """Add a version of the secret ``name`` (the current one from now on); its id."""
        version = secrets.token_hex(16)
        with self._lock:
            self._secrets.setdefault(name, []).append((version, value))
            self._save()
        return f"{self.vault_url}/secrets/{name}/{version}"

    def key_id(self, name: str = RECEIPT_KEY_NAME) -> str:
        """The versionless id the app's setting holds."""
        return f"{self.vault_url}/keys/{name}"

    # -- protocol --------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = _Request(method, parts.path.rstrip("/"), query, headers, body)
        try:
            status, payload = self._route(request)
            reply = Reply(status, json.dumps(payload).encode())
        except _Refusal as refusal:
            error: dict[str, Any] = {"code": refusal.code, "message": refusal.message}
            if refusal.code == "Forbidden":
                error["innererror"] = {"code": "ForbiddenByRbac"}
            body = json.dumps({"error": error}).encode()
            reply = Reply(refusal.status, body, dict(refusal.headers))
        reply.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        reply.headers["x-ms-request-id"] = str(uuid.uuid4())
        reply.headers["x-ms-keyvault-service-version"] = "1.9.0.0"
        with self._lock:
            self.requests.append((method, request.path, reply.status))
        return reply

    def _route(self, request: _Request) -> tuple[int, dict[str, Any]]:
        self._authenticate(request)
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            raise _Refusal(
                400,
                "BadParameter",
                f"The specified version ({version}) is not recognized. Consider using the "
                f"latest supported version ({max(API_VERSIONS)}).",
            )
        segments = request.path.strip("/").split("/")
        if len(segments) in (2, 3) and segments[0] == "secrets" and request.method == "GET":
            self._allow(request, "getSecret", segments[1], kind="secrets")
            return 200, self._secret(segments[1], segments[2] if len(segments) == 3 else None)
        if len(segments) < 2 or segments[0] != "keys":
            raise _Refusal(404, "NotFound", "The requested resource was not found.")
        return self._route_key(request, segments[1], segments[2:])

    def _route_key(
        self, request: _Request, name: str, rest: list[str]
    ) -> tuple[int, dict[str, Any]]:
        """One key operation: ``/keys/{name}/...`` with what follows the name in ``rest``."""
        method = request.method
        if method == "POST" and rest == ["create"]:
            return 200, self._create(request, name)
        if method == "POST" and rest == ["rotate"]:
            self._allow(request, "rotate", name)
            return 200, self._bundle(name, self.rotate(name).rsplit("/", 1)[-1])
        if method == "GET" and rest == ["versions"]:
            self._allow(request, "read", name)
            return 200, self._versions(name)
        if method == "GET" and len(rest) <= 1:
            self._allow(request, "read", name)
            return 200, self._bundle(name, rest[0] if rest and rest[0] else None)
        if method == "POST" and len(rest) == 2 and rest[1] == "sign":
            self._allow(request, "sign", name)
            return 200, self._sign(request, name, rest[0] or None)
        raise _Refusal(405, "MethodNotAllowed", f"{method} is not supported on {request.path}")

    def _authenticate(self, request: _Request) -> None:
        challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            f'resource="{KEYVAULT_RESOURCE}"'
        )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        unauthorized = _Refusal(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            **{"WWW-Authenticate": challenge},
        )
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized
        try:
            claims = jwt.decode(
                token.strip(), options={"verify_signature": False, "verify_exp": False}
            )
        except jwt.PyJWTError:
            unauthorized.message = "AKV10022: Invalid audience or malformed token."
            raise unauthorized from None
        audience = str(claims.get("aud", "")).rstrip("/")
        now = time.time()
        if audience not in (KEYVAULT_RESOURCE, "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"):
            unauthorized.message = f"AKV10022: Invalid audience. Expected {KEYVAULT_RESOURCE}."
            raise unauthorized
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            unauthorized.message = "AKV10032: Invalid issuer or token expired."
            raise unauthorized
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + _CLOCK_SKEW:
            unauthorized.message = "AKV10032: Token not yet valid."
            raise unauthorized
        request.principal = str(claims.get("oid", ""))

    def _allow(self, request: _Request, action: str, name: str, kind: str = "keys") -> None:
        with self._lock:
            allowed = action in self.grants.get(request.principal, set())
        if not allowed:
            raise _Refusal(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed "
                "recently, please observe propagation time.\r\n"
                f"Caller: oid={request.principal}\r\n"
                f"Action: '{_ACTION_NAMES[action]}'\r\n"
                f"Resource: '{self.vault_url}/{kind}/{name}'\r\n"
                "Assignment: (not found)\r\n",
            )

    def _secret(self, name: str, version: str | None) -> dict[str, Any]:
        with self._lock:
            versions = list(self._secrets.get(name, ()))
        found = [v for v in versions if version in (None, v[0])]
        if not found:
            what = f"{name}/{version}" if version else name
            raise _Refusal(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {what} was not found in this key vault.",
            )
        chosen, value = found[-1]
        return {
            "value": value,
            "id": f"{self.vault_url}/secrets/{name}/{chosen}",
            "attributes": {"enabled": True, "recoveryLevel": "Recoverable+Purgeable"},
        }

    def _create(self, request: _Request, name: str) -> dict[str, Any]:
        self._allow(request, "create", name)
        params = _json_body(request.body)
        if params.get("kty") not in ("EC", "EC-HSM"):
            raise _Refusal(400, "BadParameter", "This vault creates EC keys only (kty EC).")
        crv = str(params.get("crv") or "P-256")
        if crv not in _CURVES:
            raise _Refusal(400, "BadParameter", f"Unsupported curve {crv}.")
        key_ops = [str(op) for op in params.get("key_ops") or ["sign", "verify"]]
        with self._lock:
            version = self._new_version(name, crv, key_ops)
        return self._bundle(name, version.version)

    def _versions(self, name: str) -> dict[str, Any]:
        with self._lock:
            versions = list(self._keys.get(name) or [])
        if not versions:
            raise _not_found(name)
        return {
            "value": [
                {"kid": self._kid(name, v.version), "attributes": _attributes(v), "managed": False}
                for v in versions
            ],
            "nextLink": None,
        }

    def _bundle(self, name: str, version: str | None) -> dict[str, Any]:
        with self._lock:
            found = self._find(name, version) if version else self._current(name)
        public = found.private_key.public_key().public_numbers()
        size = _CURVES[found.crv][2]
        return {
            "key": {
                "kid": self._kid(name, found.version),
                "kty": "EC",
                "crv": found.crv,
                "key_ops": found.key_ops,
                "x": _b64(public.x.to_bytes(size, "big")),
                "y": _b64(public.y.to_bytes(size, "big")),
            },
            "attributes": _attributes(found),
            "tags": {},
        }

    def _sign(self, request: _Request, name: str, version: str | None) -> dict[str, Any]:
        params = _json_body(request.body)
        with self._lock:
            found = self._find(name, version) if version else self._current(name)
        if not found.enabled:
            raise _Refusal(403, "Forbidden", "Operation sign is not allowed on a disabled key.")
        if "sign" not in found.key_ops:
            raise _Refusal(403, "Forbidden", "Operation sign is not permitted on this key.")
        _, alg, size, digest_hash = _CURVES[found.crv]
        if params.get("alg") != alg:
            raise _Refusal(400, "BadParameter", f"Invalid algorithm {params.get('alg')!r}.")
        try:
            digest = _unb64(str(params.get("value", "")))
        except ValueError:
            raise _Refusal(400, "BadParameter", "value is not base64url.") from None
        if len(digest) != digest_hash.digest_size:
            raise _Refusal(400, "BadParameter", f"Invalid digest length {len(digest)} for {alg}.")
        der = found.private_key.sign(digest, ec.ECDSA(Prehashed(digest_hash)))
        r, s = decode_dss_signature(der)
        return {
            "kid": self._kid(name, found.version),
            "value": _b64(r.to_bytes(size, "big") + s.to_bytes(size, "big")),
        }

    # -- keys (callers hold the lock) --------------------------------------------------------

    def _new_version(self, name: str, crv: str, key_ops: list[str]) -> _Version:
        version = _Version(
            version=secrets.token_hex(16),
            private_key=ec.generate_private_key(_CURVES[crv][0]),
            crv=crv,
            created=int(self.clock().timestamp()),
            key_ops=key_ops,
        )
        self._keys.setdefault(name, []).append(version)
        self._save()
        return version

    def _current(self, name: str) -> _Version:
        versions = self._keys.get(name)
        if not versions:
            raise _not_found(name)
        return versions[-1]

    def _find(self, name: str, version: str) -> _Version:
        for candidate in self._keys.get(name) or []:
            if candidate.version == version:
                return candidate
        raise _not_found(name, version)

    def _kid(self, name: str, version: str) -> str:
        return f"{self.vault_url}/keys/{name}/{version}"

    def _save(self) -> None:
        if self.state_file is None:
            return
        state = {name: [v.to_state() for v in versions] for name, versions in self._keys.items()}
        kept = {
            "keys": state,
            "secrets": {n: [list(v) for v in vs] for n, vs in self._secrets.items()},
        }
        # Private keys and secrets (offline test ones only): owner-only.
        write_atomically(self.state_file, json.dumps(kept, indent=2), private=True)

    def _load(self) -> None:
        if self.state_file is None:
            return
        what = "the local Key Vault's keys, which signed the receipts of packages built here"
        data = read_json(self.state_file, what=what)
        if data is None:
            return
        try:
            self._keys = {
                str(name): [_Version.from_state(v) for v in versions]
                for name, versions in data["keys"].items()
            }
            self._secrets = {
                str(name): [(str(v[0]), str(v[1])) for v in versions]
                for name, versions in data.get("secrets", {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise unreadable(self.state_file, what, f"{type(error).__name__}: {error}") from None


def _attributes(version: _Version) -> dict[str, Any]:
    return {
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
        "exportable": False,
    }


def _not_found(name: str, version: str | None = None) -> _Refusal:
    what = f"{name}/{version}" if version else name
    return _Refusal(
        404, "KeyNotFound", f"A key with (name/id) {what} was not found in this key vault."
    )


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except json.JSONDecodeError:
        raise _Refusal(400, "BadParameter", "The request body is not JSON.") from None
    if not isinstance(value, dict):
        raise _Refusal(400, "BadParameter", "The request body is not a JSON object.")
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None


def digest_of(data: bytes) -> bytes:
    """SHA-256, the digest ES256 signs (for tests that drive the REST API by hand)."""
    return hashlib.sha256(data).digest()


# -- the forward proxy -------------------------------------------------------------------------


class VaultProxy(Service):
    """An HTTP CONNECT proxy on loopback that tunnels ``routes`` (``host:443``) to local ports.

    Everything else is refused (403): the offline host reaches nothing but itself. The tunnel
    carries TLS end to end; the proxy sees only the host name the client asked for.
    """

    def __init__(self, routes: Mapping[str, int]) -> None:
        self._routes = {host.lower(): port for host, port in routes.items()}
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.tunnels: list[str] = []

    def start(self) -> Self:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._tunnel(self.connection, self.rfile)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="vault-proxy", daemon=True
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

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``HTTPS_PROXY`` (both spellings: requests reads the lower-case one first) and a
        ``NO_PROXY`` that keeps loopback direct."""
        bypass = [h for h in environ.get("NO_PROXY", "").split(",") if h.strip()]
        bypass += [h for h in ("127.0.0.1", "localhost") if h not in bypass]
        no_proxy = ",".join(bypass)
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def _tunnel(self, client: socket.socket, reader: Any) -> None:
        request_line = reader.readline(8192).decode("latin-1").strip()
        while reader.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        method, _, rest = request_line.partition(" ")
        authority = rest.partition(" ")[0].lower()
        host, _, port = authority.rpartition(":")
        target = self._routes.get(host) if method.upper() == "CONNECT" and port == "443" else None
        if target is None:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", target), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.tunnels.append(host)
        client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        _pipe(client, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with contextlib.ExitStack() as stack:
        stack.callback(b.close)
        selector = selectors.DefaultSelector()
        stack.callback(selector.close)
        a.setblocking(False)
        b.setblocking(False)
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in selector.select(timeout=60):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                sink: socket.socket = key.data
                try:
                    chunk = source.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                try:
                    sink.setblocking(True)
                    sink.sendall(chunk)
                    sink.setblocking(False)
                except OSError:
                    return
            else:
                continue
