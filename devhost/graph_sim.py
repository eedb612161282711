"""An offline Microsoft Graph that enforces the ``exportPersonalData`` contract.

The app cannot be tested against the real service (exports take days and touch real people),
so this simulator reproduces what the contract in ``graph-export-contract.md`` says the
service does, including the parts that hurt: the seven SAS checks run for real against Azurite
*through the SAS it was given*, the call is not idempotent, an unknown operation is a 400,
and throttling, outages and dropped connections can be switched on from another process.

Time for the export comes from an injected clock, so a host can run a three-day export in
seconds; token lifetimes and rate limits stay on real time because clients experience them
in real time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import jwt
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.storage.blob import BlobClient, ContainerClient

from devhost._service import Service
from devhost.tls import TlsFiles, server_ssl_context

__all__ = [
    "DEMO_DIRECTORY",
    "EXPORT_ROLE",
    "GRAPH_RESOURCE",
    "READ_ROLE",
    "Faults",
    "GraphSimulator",
    "OperationView",
    "RequestRecord",
]

GRAPH_RESOURCE = "https://graph.microsoft.com"
_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXPORT_ROLE = "User.Export.All"
READ_ROLE = "User.Read.All"

DEMO_DIRECTORY: Mapping[str, str] = {
    "adele.vance@contoso.example": "6e7b768e-07e2-4810-8459-485f84f8f204",
    "alex.wilber@contoso.example": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "megan.bowen@contoso.example": "48d31887-5fad-4d73-a9f5-3c356e68a038",
}

_log = logging.getLogger(__name__)
# The storage SDK logs each request (SAS URLs as "...&sig=REDACTED") at INFO; the simulator's
# own storage calls are an implementation detail, so only warnings get through, redacted.
_storage_log = logging.getLogger(f"{__name__}.storage")
_storage_log.setLevel(logging.WARNING)


class _RedactSignatures(logging.Filter):
    """urllib3 logs request lines, query string included, at DEBUG: cut the signature out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sig=" in message.lower():
            record.msg, record.args = _redact(message), None
        return True


_URLLIB3_LOGGER = "urllib3.connectionpool"
_storage_log.addFilter(_RedactSignatures())

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SIG = re.compile(r"(?i)\bsig=[^&\s\"']*")
_SUBMIT = re.compile(r"^/(beta|v1\.0)/users/([^/]+)/exportPersonalData$")
_POLL = re.compile(r"^/(beta|v1\.0)/dataPolicyOperations/([^/]+)$")
_USER = re.compile(r"^/(beta|v1\.0)/users/([^/]+)$")
_ADMIN = "/_sim/"
_REQUEST_INFO = "RequestInfo.json"
_START_FRACTION = 0.02  # share of the duration spent in notStarted
_FAIL_AT = 0.5  # progress at which an operation of a failing user fails
_RATE_WINDOW = 60.0
_ROUTES = frozenset({"submit", "poll", "resolve"})
_OPTIONAL_KNOBS = frozenset({"error_retry_after", "submit_limit_per_minute"})
_ERROR_CODES = {
    500: "InternalServerError",
    502: "PartnerError",
    503: "ServiceUnavailable",
    504: "PartnerTimeout",
}
_PRODUCTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AzureAD", ("Profile.json", "SignInActivity.json", "Devices.json", "Groups.json")),
    ("Exchange", ("Mailbox.json", "Contacts.json", "Calendar.json", "Tasks.json")),
    ("OneDrive", ("Files.json", "Sharing.json", "Versions.json")),
    ("SharePoint", ("Sites.json", "Lists.json")),
    ("Teams", ("Profile.json", "Meetings.json")),
    ("Dynamics365", ("Interactions.json",)),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Faults:
    """Knobs a test or demo flips to make the simulator misbehave.

    The ``*_next`` counters apply to the next K requests on the routes named in ``routes``
    (``submit``, ``poll``, ``resolve``) and count down as they fire. Users in
    ``failing_users`` get operations that end ``failed``; users in ``missing_users`` do not
    exist (404), whatever the directory says. Users are matched by object id or UPN.
    """

    throttle_next: int = 0
    throttle_retry_after: int = 5
    error_next: int = 0
    error_status: int = 503
    error_retry_after: int | None = 5  # sent with 503 only, as the service does
    slow_next: int = 0
    slow_seconds: float = 0.0
    drop_next: int = 0
    drop_after_processing: bool = False  # True: the request takes effect, the answer is lost
    submit_limit_per_minute: int | None = None
    # Whether the service takes a user delegation SAS is not known (see the contract): this
    # answers StorageLocationInvalid for one (it has `skoid`), so both outcomes can be tested.
    refuse_user_delegation_sas: bool = False
    failing_users: set[str] = field(default_factory=set)
    missing_users: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=lambda: {"submit", "poll", "resolve"})

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}


@dataclass(frozen=True)
class OperationView:
    """What tests may see of an operation: everything except the SAS."""

    id: str
    user_id: str
    status: str
    storage_location: str
    submitted_date_time: datetime
    completed_date_time: datetime | None
    progress: float
    files_written: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userId": self.user_id,
            "status": self.status,
            "storageLocation": self.storage_location,
            "submittedDateTime": _iso(self.submitted_date_time),
            "completedDateTime": _iso(self.completed_date_time),
            "progress": self.progress,
            "filesWritten": self.files_written,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator answered it (path without query; status 0 = dropped)."""

    method: str
    path: str
    route: str
    status: int
    request_id: str
    client_request_id: str | None


@dataclass(frozen=True)
class _File:
    path: str
    size: int


@dataclass
class _Operation:
    id: str
    user_id: str
    storage_location: str  # container URL without the SAS
    submitted: datetime
    manifest: tuple[_File, ...]
    fails: bool
    sas_url: str = field(repr=False)
    status: str = "notStarted"
    completed: datetime | None = None
    progress: float = 0.0
    written: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> OperationView:
        return OperationView(
            id=self.id,
            user_id=self.user_id,
            status=self.status,
            storage_location=self.storage_location,
            submitted_date_time=self.submitted,
            completed_date_time=self.completed,
            progress=self.progress,
            files_written=self.written,
        )


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    error: tuple[str, str] | None = None  # (code, message), rendered as a Graph error body


class _GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class GraphSimulator(Service):
    """HTTPS Graph on loopback: submit, poll, resolve, plus ``/_sim/`` admin routes.

    Admin routes (JSON, no token): ``GET|POST|DELETE /_sim/faults`` (POST merges the given
    fields, DELETE resets), ``GET /_sim/operations``, ``GET /_sim/operations/{id}/files``,
    ``GET /_sim/stats``, ``GET /_sim/requests``, ``POST /_sim/users`` (``{"upn", "id"?}``),
    ``POST /_sim/tick``.
    """

    def __init__(
        self,
        tls: TlsFiles,
        *,
        clock: Callable[[], datetime] = _utcnow,
        export_duration: timedelta = timedelta(days=3),
        directory: Mapping[str, str] | None = None,
        seed: int = 0,
        ca_bundle: str | Path | None = None,
        graph_resource: str = GRAPH_RESOURCE,
        tick_interval: float | None = 0.5,
    ) -> None:
        if export_duration <= timedelta(0):
            raise ValueError("export_duration must be positive")
        self._tls = tls
        self._clock = clock
        self._duration = export_duration
        self._seed = seed
        self._ca_bundle = str(ca_bundle or tls.cert_path)
        self._resource = graph_resource.rstrip("/")
        self._tick_interval = tick_interval
        self._directory = {
            upn.lower(): oid.lower() for upn, oid in (directory or DEMO_DIRECTORY).items()
        }
        self.faults = Faults()
        self._lock = threading.RLock()
        self._ids = random.Random(seed)  # noqa: S311 - deterministic ids are the point
        self._operations: dict[str, _Operation] = {}
        self._by_user: Counter[str] = Counter()
        self._by_container: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []
        self._submit_times: deque[float] = deque()
        self._server: _TlsServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        urllib3_log = logging.getLogger(_URLLIB3_LOGGER)
        if not any(isinstance(f, _RedactSignatures) for f in urllib3_log.filters):
            urllib3_log.addFilter(_RedactSignatures())
        self._stopping.clear()
        self._server = _TlsServer(server_ssl_context(self._tls), _handler_for(self))
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="graph-sim", daemon=True
            )
        ]
        if self._tick_interval is not None:
            self._threads.append(
                threading.Thread(target=self._ticker, name="graph-sim-ticker", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # -- directory and faults --------------------------------------------------------------

    def add_user(self, upn: str, object_id: str | None = None) -> str:
        """Add a user to the directory; returns the object id (made up if not given)."""
        with self._lock:
            oid = (object_id or self._new_guid()).lower()
            if not _GUID.match(oid):
                raise ValueError("object_id must be a GUID")
            self._directory[upn.lower()] = oid
        return oid

    def set_faults(self, **changes: Any) -> Faults:
        """Change some knobs at once (the admin route uses this); unknown names are refused."""
        values = {name: _coerce_knob(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in values.items():
                setattr(self.faults, name, value)
            return self.faults

    def reset_faults(self) -> None:
        with self._lock:
            self.faults = Faults()

    # -- inspection ------------------------------------------------------------------------

    def operations(self) -> list[OperationView]:
        with self._lock:
            return [op.view() for op in self._operations.values()]

    def operation(self, op_id: str) -> OperationView:
        return self._operation(op_id).view()

    def expected_files(self, op_id: str) -> dict[str, int]:
        """Blob name -> size of every product file the operation writes (not RequestInfo.json)."""
        return {f.path: f.size for f in self._operation(op_id).manifest}

    def submissions_by_user(self) -> dict[str, int]:
        """Accepted submissions (202) per user object id."""
        with self._lock:
            return dict(self._by_user)

    def submissions_by_container(self) -> dict[str, int]:
        """Accepted submissions per container URL (without SAS)."""
        with self._lock:
            return dict(self._by_container)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def tick(self) -> None:
        """Advance every unfinished operation to the clock's present (writing files)."""
        with self._lock:
            ops = [op for op in self._operations.values() if op.completed is None]
        for op in ops:
            self._drive(op)

    # -- request handling ------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        request_id = str(uuid.uuid4())
        client_request_id = headers.get("client-request-id")
        parts = urlsplit(target)
        path = unquote(parts.path)
        try:
            if path.startswith(_ADMIN):
                route, reply = "admin", self._admin(method, path, body)
            else:
                route, reply = self._graph(method, path, parts.query, headers, body)
        except Exception as error:  # noqa: BLE001 - a simulator bug must still answer
            _log.warning("graph simulator error: %s", type(error).__name__)
            route, reply = "error", _error_reply(500, "InternalServerError", "Simulator error.")
        if not reply.drop:
            if reply.body or reply.error:
                reply.headers.setdefault("Content-Type", "application/json")
            reply.headers["request-id"] = request_id
            if client_request_id:
                reply.headers["client-request-id"] = client_request_id
            if reply.error is not None:
                reply.body = self._error_body(reply.error, request_id, client_request_id)
        status = 0 if reply.drop else reply.status  # 0: the connection was dropped
        record = RequestRecord(method, parts.path, route, status, request_id, client_request_id)
        with self._lock:
            self._requests.append(record)
        _log.info(_redact(f"{method} {parts.path} -> {status} request-id={request_id}"))
        return reply

    def _graph(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, _Reply]:
        route, match = _route(path)
        if route == "unknown":
            return route, _error_reply(
                400, "BadRequest", f"Resource not found for the segment '{path}'."
            )
        expected_method = "POST" if route == "submit" else "GET"
        if method != expected_method:
            return route, _error_reply(405, "MethodNotAllowed", f"{method} is not allowed here.")
        assert match is not None
        dropped = self._take_fault(route, "drop_next")
        if dropped and not self.faults.drop_after_processing:
            return route, _Reply(0, drop=True)
        if self._take_fault(route, "slow_next"):
            time.sleep(self.faults.slow_seconds)
        try:
            self._injected_failures(route)
            claims = self._authenticate(headers.get("authorization"))
            if route == "submit":
                reply = self._submit(match.group(1), match.group(2), claims, body)
            elif route == "poll":
                reply = self._poll(match.group(1), match.group(2), claims)
            else:
                reply = self._resolve(match.group(1), match.group(2), query, claims)
        except _GraphError as error:
            reply = _Reply(error.status, headers=error.headers, error=(error.code, error.message))
        if dropped:
            return route, _Reply(0, drop=True)
        return route, reply

    def _injected_failures(self, route: str) -> None:
        if self._take_fault(route, "throttle_next"):
            retry_after = str(self.faults.throttle_retry_after)
            raise _GraphError(
                429, "TooManyRequests", "Too many requests.", {"Retry-After": retry_after}
            )
        if self._take_fault(route, "error_next"):
            status = self.faults.error_status
            extra = {}
            if status == 503 and self.faults.error_retry_after is not None:
                extra["Retry-After"] = str(self.faults.error_retry_after)
            code = _ERROR_CODES.get(status, "InternalServerError")
            raise _GraphError(status, code, "Injected failure.", extra)

    def _take_fault(self, route: str, counter: str) -> bool:
        with self._lock:
            if route not in self.faults.routes:
                return False
            remaining: int = getattr(self.faults, counter)
            if remaining <= 0:
                return False
            setattr(self.faults, counter, remaining - 1)
            return True

    def _authenticate(self, authorization: str | None) -> dict[str, Any]:
        def refuse(message: str) -> _GraphError:
            challenge = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", client_id="{_GRAPH_APP_ID}"'
            )
            return _GraphError(
                401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": challenge}
            )

        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise refuse("Access token is empty.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(), options={"verify_signature": False, "verify_exp": False}
            )
        except jwt.PyJWTError:
            raise refuse("IDX14100: JWT is not well formed.") from None
        audience = str(claims.get("aud", "")).rstrip("/")
        # A national cloud's tokens carry its own Graph URL as audience; so do this host's.
        if audience not in (self._resource, _GRAPH_APP_ID, self.base_url):
            raise refuse("Access token validation failure. Invalid audience.")
        now = time.time()
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise refuse("Lifetime validation failed, the token is expired.")
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + 300:
            raise refuse("Lifetime validation failed, the token is not yet valid.")
        return claims

    @staticmethod
    def _require(claims: Mapping[str, Any], permission: str) -> None:
        granted = set(claims.get("roles") or []) | set(str(claims.get("scp", "")).split())
        if permission not in granted:
            raise _GraphError(
                403,
                "Forbidden",
                "Insufficient privileges to complete the operation "
                f"(Authorization_RequestDenied): the permission '{permission}' is missing "
                "or has not been consented.",
            )

    def _submit(self, version: str, user: str, claims: Mapping[str, Any], body: bytes) -> _Reply:
        self._require(claims, EXPORT_ROLE)
        self._rate_limit()
        if not _GUID.match(user):
            raise _GraphError(400, "InvalidInput", f"Invalid input: '{user}' is an invalid Guid.")
        user_id = user.lower()
        if self._lookup(user_id) is None:
            raise _not_found(user)
        location = _storage_location(body)
        with self._lock:
            op_id = self._new_guid()
            submitted = self._clock()
        info = _request_info(op_id, user_id, submitted)
        self._validate_storage_location(location, info)
        op = self._accept(op_id, user_id, submitted, location)
        url = f"{self.base_url}/{version}/dataPolicyOperations/{op.id}"
        return _Reply(
            202,
            headers={"Location": url, "Operation-Location": url, "Retry-After": "60"},
        )

    def _rate_limit(self) -> None:
        limit = self.faults.submit_limit_per_minute
        now = time.monotonic()
        with self._lock:
            while self._submit_times and now - self._submit_times[0] >= _RATE_WINDOW:
                self._submit_times.popleft()
            if limit is not None and len(self._submit_times) >= limit:
                wait = math.ceil(_RATE_WINDOW - (now - self._submit_times[0]))
                raise _GraphError(
                    429,
                    "TooManyRequests",
                    f"Too many export requests: limit is {limit} per minute.",
                    {"Retry-After": str(max(1, wait))},
                )
            self._submit_times.append(now)

    def _lookup(self, user: str) -> tuple[str, str] | None:
        """(object id, UPN) of a user named by either, unless absent or hidden by a fault."""
        key = user.lower()
        with self._lock:
            oid = self._directory.get(key, key)
            upn = next((u for u, o in self._directory.items() if o == oid), None)
            if upn is None or {oid, upn} & _folded(self.faults.missing_users):
                return None
            return oid, upn

    def _accept(
        self,
        op_id: str,
        user_id: str,
        submitted: datetime,
        location: str,
    ) -> _Operation:
        container_url = _without_query(location)
        with self._lock:
            upns = {upn for upn, oid in self._directory.items() if oid == user_id}
            fails = bool(({user_id} | upns) & _folded(self.faults.failing_users))
            op = _Operation(
                id=op_id,
                user_id=user_id,
                storage_location=container_url,
                submitted=submitted,
                manifest=_manifest(self._seed, user_id),
                fails=fails,
                sas_url=location,
            )
            self._operations[op_id] = op
            self._by_user[user_id] += 1
            self._by_container[container_url] += 1
        return op

    def _poll(self, version: str, op_id: str, claims: Mapping[str, Any]) -> _Reply:
        self._require(claims, READ_ROLE)
        with self._lock:
            op = self._operations.get(op_id)
        if op is None:
            raise _GraphError(
                400, "OperationNotFound", f"The operation '{op_id}' could not be found."
            )
        self._drive(op)
        payload = {
            "@odata.context": f"{self.base_url}/{version}/$metadata#dataPolicyOperations/$entity",
            **{k: v for k, v in op.view().to_json().items() if k != "filesWritten"},
        }
        return _json_reply(200, payload)

    def _resolve(self, version: str, user: str, query: str, claims: Mapping[str, Any]) -> _Reply:
        self._require(claims, READ_ROLE)
        found = self._lookup(user)
        if found is None:
            raise _not_found(user)
        oid, upn = found
        select = parse_qs(query).get("$select", ["id,userPrincipalName"])[-1].split(",")
        record = {"id": oid, "userPrincipalName": upn}
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/{version}/$metadata#users(id)/$entity"
        }
        payload.update({k: record[k] for k in record if k in {s.strip() for s in select}})
        return _json_reply(200, payload)

    # -- the SAS checks, in the service's order --------------------------------------------

    def _validate_storage_location(self, location: str, request_info: bytes) -> None:
        """Run the seven checks through the SAS itself, the way the service does."""
        parts = urlsplit(location)
        query = parse_qs(parts.query)
        if parts.scheme not in ("http", "https") or not parts.hostname or "sig" not in query:
            raise _storage_error("SharedAccessSignatureTokenInvalid", "The SAS token is invalid.")
        if "ss" in query:
            raise _storage_error(
                "StorageLocationNotServiceSAS", "The storage location must be a service SAS."
            )
        if "skoid" in query and self.faults.refuse_user_delegation_sas:
            raise _storage_error("StorageLocationInvalid", "The storage location is invalid.")
        segments = [s for s in parts.path.split("/") if s]
        if _path_style(parts.hostname):
            segments = segments[1:]  # emulator URLs carry the account as the first segment
        if len(segments) != 1 or not _blob_host(parts.hostname):
            raise _storage_error(
                "StorageLocationNotAzureBlob",
                "The storage location must be an Azure Blob storage container.",
            )
        try:
            container = ContainerClient.from_container_url(
                location,
                connection_verify=self._ca_bundle,
                retry_total=0,
                connection_timeout=10,
                read_timeout=30,
                logger=_storage_log,
            )
            with container:
                self._refuse_listing(container)
                blob = container.get_blob_client(_REQUEST_INFO)
                self._create_request_info(blob, request_info)
                self._refuse_reading(blob)
        except _GraphError:
            raise
        except Exception as error:  # noqa: BLE001 - rule 7: anything else
            _log.info("storage location invalid: %s", type(error).__name__)
            raise _storage_error(
                "StorageLocationInvalid", "The storage location is invalid."
            ) from None

    @staticmethod
    def _refuse_listing(container: ContainerClient) -> None:
        try:
            next(iter(container.list_blobs(results_per_page=1)), None)
        except AzureError:
            return
        raise _storage_error(
            "StorageLocationShouldNotAllowListAccess",
            "The storage location should not allow list access.",
        )

    @staticmethod
    def _create_request_info(blob: BlobClient, content: bytes) -> None:
        try:
            blob.create_append_blob(match_condition=MatchConditions.IfMissing)
        except (ResourceExistsError, ResourceModifiedError):
            raise _storage_error(
                "StorageLocationAlreadyUsed",
                "The storage location has already been used. "
                f"Delete '{_REQUEST_INFO}' from the container and try again.",
            ) from None
        except HttpResponseError as error:
            if error.status_code == 403:
                raise _needs_write() from None
            raise
        try:
            blob.append_block(content)
        except HttpResponseError as error:
            if error.status_code == 403:
                raise _needs_write() from None
            raise

    @staticmethod
    def _refuse_reading(blob: BlobClient) -> None:
        try:
            blob.download_blob().readall()
        except AzureError:
            return
        with contextlib.suppress(AzureError):
            blob.delete_blob()
        raise _storage_error(
            "StorageLocationShouldNotAllowReadAccess",
            "The storage location should not allow read access.",
        )

    # -- progress --------------------------------------------------------------------------

    def _drive(self, op: _Operation) -> None:
        """Bring ``op`` to the state the clock says it is in, writing the files now due."""
        with op.lock:
            if op.completed is not None:
                return
            fraction = self._fraction(op, self._clock())
            if fraction is None:
                return
            target = min(fraction, _FAIL_AT) if op.fails else fraction
            due = math.ceil(target * len(op.manifest))
            try:
                self._write_files(op, due)
            except AzureError as error:
                if isinstance(error, HttpResponseError) and error.status_code in (403, 404):
                    # The SAS was revoked or the container deleted: this export cannot finish.
                    _log.info("operation %s failed: storage said %s", op.id, error.status_code)
                    self._finish(op, "failed", self._clock())
                else:  # transient: try again on the next poll or tick
                    _log.info("operation %s: write deferred (%s)", op.id, type(error).__name__)
                return
            if op.fails and fraction >= _FAIL_AT:
                self._finish(op, "failed", self._at(op, _FAIL_AT))
            elif fraction >= 1:
                self._finish(op, "complete", op.submitted + self._duration)
            else:
                op.status = "running"
                op.progress = min(99.9, round(fraction * 100, 1))

    def _fraction(self, op: _Operation, now: datetime) -> float | None:
        """None while notStarted, else how far through the running phase ``now`` is."""
        start = self._duration * _START_FRACTION
        elapsed = now - op.submitted
        if elapsed < start:
            return None
        return min(1.0, (elapsed - start) / (self._duration - start))

    def _at(self, op: _Operation, fraction: float) -> datetime:
        start = self._duration * _START_FRACTION
        return op.submitted + start + (self._duration - start) * fraction

    def _write_files(self, op: _Operation, due: int) -> None:
        if op.written >= due:
            return
        container = ContainerClient.from_container_url(
            op.sas_url, connection_verify=self._ca_bundle, retry_total=2, logger=_storage_log
        )
        with container:
            for item in op.manifest[op.written : due]:
                data = _render(self._seed, op.user_id, item)
                container.upload_blob(item.path, data, overwrite=True)
                op.written += 1

    @staticmethod
    def _finish(op: _Operation, status: str, when: datetime) -> None:
        op.status = status
        op.completed = when
        if status == "complete":
            op.progress = 100.0
        op.sas_url = ""  # nothing left to write: forget the secret

    def _ticker(self) -> None:
        assert self._tick_interval is not None
        while not self._stopping.wait(self._tick_interval):
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - a dead ticker would freeze every export
                # Type only: storage errors can quote request URLs, signature included.
                _log.warning("graph simulator tick failed: %s", type(error).__name__)

    # -- admin -----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> _Reply:
        name = path[len(_ADMIN) :].strip("/")
        try:
            if name == "faults":
                if method == "POST":
                    self.set_faults(**_json_object(body))
                elif method == "DELETE":
                    self.reset_faults()
                return _json_reply(200, self.faults.to_json())
            if name == "operations":
                return _json_reply(200, [op.to_json() for op in self.operations()])
            if name.startswith("operations/") and name.endswith("/files"):
                return _json_reply(200, self.expected_files(name.split("/")[1]))
            if name == "stats":
                stats = {
                    "submissionsByUser": self.submissions_by_user(),
                    "submissionsByContainer": self.submissions_by_container(),
                    "operations": len(self.operations()),
                }
                return _json_reply(200, stats)
            if name == "requests":
                return _json_reply(200, [dataclasses.asdict(r) for r in self.requests()])
            if name == "users" and method == "POST":
                data = _json_object(body)
                return _json_reply(200, {"id": self.add_user(data["upn"], data.get("id"))})
            if name == "tick" and method == "POST":
                self.tick()
                return _json_reply(200, {})
        except (KeyError, ValueError, TypeError) as error:
            return _json_reply(400, {"error": _redact(str(error))})
        return _json_reply(404, {"error": f"no admin route {method} {path}"})

    def _new_guid(self) -> str:
        """Seeded, so that the same run of requests gets the same ids."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _operation(self, op_id: str) -> _Operation:
        with self._lock:
            return self._operations[op_id]

    def _error_body(
        self, error: tuple[str, str], request_id: str, client_request_id: str | None
    ) -> bytes:
        code, message = error
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": _iso(self._clock()),
                    "request-id": request_id,
                    "client-request-id": client_request_id or request_id,
                },
            }
        }
        return json.dumps(body).encode()


# -- helpers --------------------------------------------------------------------------------


def _route(path: str) -> tuple[str, re.Match[str] | None]:
    for name, pattern in (("submit", _SUBMIT), ("poll", _POLL), ("resolve", _USER)):
        match = pattern.match(path)
        if match:
            return name, match
    return "unknown", None


def _storage_location(body: bytes) -> str:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    location = data.get("storageLocation") if isinstance(data, dict) else None
    parts = urlsplit(location) if isinstance(location, str) else None
    if parts is None or not parts.scheme or not parts.netloc:
        raise _storage_error("StorageLocationInvalid", "storageLocation must be an absolute URI.")
    return str(location)


def _coerce_knob(name: str, value: Any) -> Any:
    """Check a knob from the admin route, so a typo fails there and not in a request later."""
    defaults = Faults()
    if not hasattr(defaults, name):
        raise ValueError(f"unknown fault knob {name!r}")
    default = getattr(defaults, name)
    if value is None and name in _OPTIONAL_KNOBS:
        return None
    if isinstance(default, set):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{name} must be a list of strings")
        if name == "routes" and not set(value) <= _ROUTES:
            raise ValueError(f"routes must be among {sorted(_ROUTES)}")
        return set(value)
    if isinstance(default, bool):
        valid = isinstance(value, bool)
    elif isinstance(default, float):
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if valid else value
    else:  # counters and the optional limits
        valid = isinstance(value, int) and not isinstance(value, bool)
    if not valid:
        raise TypeError(f"{name}: {value!r} is not a valid value")
    return value


def _folded(values: set[str]) -> set[str]:
    return {v.lower() for v in values}


def _without_query(url: str) -> str:
    """The container URL with the SAS cut off: the only form that may be shown or stored."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _path_style(host: str) -> bool:
    return host == "localhost" or bool(re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host))


def _blob_host(host: str) -> bool:
    return _path_style(host) or ".blob." in host


def _storage_error(code: str, message: str) -> _GraphError:
    return _GraphError(400, code, message)


def _needs_write() -> _GraphError:
    return _storage_error(
        "StorageLocationNeedsWriteAddPermissions",
        "The storage location needs write and add permissions.",
    )


def _not_found(user: str) -> _GraphError:
    return _GraphError(
        404,
        "ResourceNotFound",
        f"Resource '{user}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def _error_reply(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, error=(code, message))


def _json_reply(status: int, payload: Any) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _redact(text: str) -> str:
    """Cut signatures out entirely, so that no log line ever contains ``sig=``."""
    return _SIG.sub("[sig removed]", text)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _manifest(seed: int, user_id: str) -> tuple[_File, ...]:
    """The product files of one user's export: same seed and user, same names and sizes."""
    rng = random.Random(f"{seed}:{user_id}")  # noqa: S311 - reproducibility, not secrecy
    files: list[_File] = []
    for product, names in _PRODUCTS:
        chosen = [n for n in names if rng.random() < 0.7] or [names[0]]
        files += [_File(f"{product}/{n}", rng.randint(512, 16_384)) for n in chosen]
    for chat in range(rng.randint(1, 4)):
        files.append(_File(f"Teams/Chats/Chat-{chat + 1:03d}.json", rng.randint(512, 16_384)))
    return tuple(files)


def _render(seed: int, user_id: str, item: _File) -> bytes:
    """Deterministic JSON content of exactly ``item.size`` bytes."""
    rng = random.Random(f"{seed}:{user_id}:{item.path}")  # noqa: S311
    head = {"product": item.path.split("/")[0], "file": item.path, "userId": user_id}
    skeleton = json.dumps({**head, "padding": ""}).encode()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    padding = "".join(rng.choice(alphabet) for _ in range(item.size - len(skeleton)))
    data = json.dumps({**head, "padding": padding}).encode()
    assert len(data) == item.size
    return data


def _request_info(op_id: str, user_id: str, submitted: datetime) -> bytes:
    info = {
        "CorrelationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"correlation:{op_id}")),
        "CommandId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"command:{op_id}")),
        "Subject": user_id,
        "Timestamp": _iso(submitted),
        "RequestGuid": op_id,
    }
    return json.dumps(info).encode()


class _TlsServer(ThreadingHTTPServer):
    """Threaded HTTPS server doing each TLS handshake in the request's thread.

    Wrapping the listening socket would run handshakes in the accept loop, where one stalled
    client blocks everybody.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.close()


def _handler_for(sim: GraphSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-IIS/10.0"
        sys_version = ""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = sim._handle(self.command, self.path, headers, body)
            if reply.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: ``_handle`` logs each request once, with signatures redacted."""

    return Handler
