"""The exportPersonalData calls themselves, and the one object a test or host holds.

Submitting is where the service's rules meet, in its order: the permission, the tenant's and
the subject's daily quotas (:mod:`.quotas`), an object id that exists, a ``storageLocation``
that passes every SAS check (which leaves ``RequestInfo.json`` behind), and only then an
operation; the call is not idempotent, so a second submit for the same user is a second
export. Polling counts against the hourly quota; polling an unknown operation is a 400.

Graph outlives the host that calls it. Given a ``state_file``, the simulator keeps there what
the service would keep (every operation with its progress and the files written, the
directory, the position of its seeded id generator, so that no id is handed out twice, and the
quota counters with their knobs, as the service keeps counting across its own restarts) and
takes it back on start; given a ``port``, it comes back on that port or not at all, so the
operation URLs its clients persisted stay valid. Faults, the request log and the submit
throttle fault's minute are test instruments and start afresh.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

from devhost._service import Service
from devhost._state import read_json, unreadable, write_atomically
from devhost.https_server import HttpsServer
from devhost.tls import TlsFiles

from .admin import admin_reply
from .directory import DEMO_DIRECTORY, GUID, Directory, user_not_found
from .export_files import PRODUCTS_LAYOUT, ExportLayout
from .faults import FaultInjector, Faults
from .operations import Operations, OperationView
from .quotas import QuotaLedger, Quotas
from .redaction import guard_urllib3, log
from .replies import GraphError, Reply, json_reply
from .routes import Endpoints, RequestRecord, Router
from .storage_contract import request_info, storage_location, validate_storage_location
from .tenancy import Space, Tenancy
from .tokens import EXPORT_ROLE, GRAPH_RESOURCE, READ_ROLE, authenticate, require

_STATE_VERSION = 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GraphSimulator(Service):
    """HTTPS Graph on loopback: submit, poll, resolve, plus ``/_sim/`` admin routes.

    Admin routes (JSON, no token): ``GET|POST|DELETE /_sim/faults`` (POST merges the given
    fields, DELETE resets), ``GET /_sim/operations``, ``GET /_sim/operations/{id}/files``,
    ``GET /_sim/stats``, ``GET /_sim/requests``, ``POST /_sim/users`` (``{"upn", "id"?}``),
    ``POST /_sim/tick``, ``GET|POST|DELETE /_sim/quotas`` (the quota knobs, as for faults;
    DELETE also forgets every request counted) and ``GET /_sim/quotas/usage``.

    ``port`` (0: a free one) and ``state_file`` (None: nothing kept) make it restart-safe;
    the state file holds the SAS of unfinished exports, so it is written owner-only.
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
        port: int = 0,
        state_file: Path | None = None,
        export_layout: ExportLayout = PRODUCTS_LAYOUT,
    ) -> None:
        """``export_layout``: what each export writes (Microsoft's product folders by default;
        the service's own ``{assetGroupId}/{agentId}/...`` layout with zips and large files for
        the package benchmark and tests)."""
        if export_duration <= timedelta(0):
            raise ValueError("export_duration must be positive")
        self._tls = tls
        self._clock = clock
        self._ca_bundle = str(ca_bundle or tls.cert_path)
        self._resource = graph_resource.rstrip("/")
        self._tick_interval = tick_interval
        self._directory = Directory(directory or DEMO_DIRECTORY)
        self._injector = FaultInjector()
        self._quotas = QuotaLedger(clock)
        #: Customer tenants (TENANCY=multi), each with its own directory, quotas, operations.
        self._tenancy = Tenancy(Space(self._directory, self._quotas), clock)
        self._operations = Operations(
            clock=clock,
            duration=export_duration,
            seed=seed,
            ca_bundle=self._ca_bundle,
            layout=export_layout,
        )
        self._router = Router(
            endpoints=Endpoints(submit=self._submit, poll=self._poll, resolve=self._resolve),
            authenticate=self._authenticate,
            injector=self._injector,
            admin=functools.partial(admin_reply, self),
            clock=clock,
        )
        self._lock = threading.RLock()  # one id and one submit time, taken together
        self._seed = seed
        self._ids = random.Random(seed)  # noqa: S311 - deterministic ids are the point
        self._port = port
        self._state_file = state_file
        self._persist_lock = threading.Lock()
        self._persisted: str | None = None
        self._server: HttpsServer | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        #: A test's hook, called with the user's object id in the submit's own thread just
        #: before Graph checks the SAS through the storage (to stop the storage at that very
        #: moment, say). Never set outside the test process; not persisted.
        self.before_storage_check: Callable[[str], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        guard_urllib3()
        self._stopping.clear()
        self._restore()
        self._server = HttpsServer(self._tls, self._router.handle, port=self._port).start()
        self._persist()
        if self._tick_interval is not None:
            self._ticker = threading.Thread(
                target=self._tick_forever,
                args=(self._tick_interval,),
                name="graph-sim-ticker",
                daemon=True,
            )
            self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.join(timeout=10)
        if server is not None:
            self._persist()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- directory and faults --------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._injector.faults = faults

    def add_user(self, upn: str, object_id: str | None = None, *, tenant: str | None = None) -> str:
        """Add a user to the directory (of the customer ``tenant``, if given: registered on
        first use); returns the object id (made up if not given)."""
        directory = self._tenancy.add(tenant).directory if tenant else self._directory
        added = directory.add(upn, object_id or self._new_guid())
        self._persist()
        return added

    def add_tenant(self, tenant_id: str, users: Mapping[str, str] | None = None) -> None:
        """Serve a customer tenant of its own: tokens whose ``tid`` names it reach only its
        directory (``users``: UPN -> object id), its quotas and its operations."""
        self._tenancy.add(tenant_id, users)
        self._persist()

    def tenants(self) -> list[str]:
        """The customer tenants served apart from the home tenant."""
        return self._tenancy.tenants()

    def set_faults(self, **changes: Any) -> Faults:
        """Change some knobs at once (the admin route uses this); unknown names are refused."""
        return self._injector.set(**changes)

    def reset_faults(self) -> None:
        self._injector.reset()

    # -- quotas ----------------------------------------------------------------------------

    @property
    def quotas(self) -> Quotas:
        """A copy of the quota knobs; change them with :meth:`set_quotas`."""
        return self._quotas.set()

    def set_quotas(self, **changes: Any) -> Quotas:
        """Change some quota knobs at once (kept in the state file); unknown names are refused."""
        try:
            return self._quotas.set(**changes)
        finally:
            self._persist()

    def reset_quotas(self) -> None:
        """The documented quotas, and nothing counted against them (a fresh tenant)."""
        self._quotas.reset()
        self._persist()

    def spend_quota(self, *, submits: int = 0, subject: str | None = None, polls: int = 0) -> None:
        """Count requests as if they had just arrived (a test's starting point): ``submits``
        against the tenant (and ``subject``, if given), ``polls`` against the hourly quota."""
        self._quotas.spend(submits=submits, subject=subject, polls=polls)
        self._persist()

    def quota_usage(self, tenant: str | None = None) -> dict[str, Any]:
        """What counts against each quota now: submits, submits by subject, polls (of the
        customer ``tenant``, if given)."""
        return self._tenancy.space(tenant).quotas.usage()

    # -- inspection ------------------------------------------------------------------------

    def operations(self) -> list[OperationView]:
        return self._operations.views()

    def operation(self, op_id: str) -> OperationView:
        return self._operations.view(op_id)

    def expected_files(self, op_id: str) -> dict[str, int]:
        """Blob name -> size of every product file the operation writes (not RequestInfo.json)."""
        return self._operations.expected_files(op_id)

    def submissions_by_user(self) -> dict[str, int]:
        """Accepted submissions (202) per user object id."""
        return self._operations.by_user()

    def submissions_by_container(self) -> dict[str, int]:
        """Accepted submissions per container URL (without SAS)."""
        return self._operations.by_container()

    def requests(self) -> list[RequestRecord]:
        return self._router.requests()

    def tick(self) -> None:
        """Advance every unfinished operation to the clock's present (writing files)."""
        try:
            self._operations.tick()
        finally:
            self._persist()

    # -- the Graph calls -------------------------------------------------------------------

    def _authenticate(self, authorization: str | None) -> dict[str, Any]:
        # A national cloud's tokens carry its own Graph URL as audience; so do this host's.
        return authenticate(authorization, (self._resource, self.base_url))

    def _submit(self, version: str, user: str, claims: Mapping[str, Any], body: bytes) -> Reply:
        require(claims, EXPORT_ROLE)
        self._injector.throttle_submits()
        space = self._tenancy.of(claims)
        try:
            space.quotas.charge_submit(user)
        finally:
            self._persist()  # a counted request stays counted across a restart
        if not GUID.match(user):
            raise GraphError(400, "InvalidInput", f"Invalid input: '{user}' is an invalid Guid.")
        user_id = user.lower()
        if space.directory.lookup(user_id, self.faults.missing_users) is None:
            raise user_not_found(user)
        location = storage_location(body)
        with self._lock:
            op_id = self._new_guid()
            submitted = self._clock()
        # The id is spent even if the submit fails from here on (RequestInfo.json may already
        # name it): keep the generator's position before anything else can happen.
        self._persist()
        hook = self.before_storage_check
        if hook is not None:
            hook(user_id)
        validate_storage_location(
            location,
            request_info(op_id, user_id, submitted),
            ca_bundle=self._ca_bundle,
            refuse_user_delegation_sas=self.faults.refuse_user_delegation_sas,
        )
        if self._injector.take("submit", "fail_before_posting_next"):
            raise GraphError(
                500, "InternalServerError", "An internal server error occurred while posting."
            )
        fails = space.directory.is_among(user_id, self.faults.failing_users)
        if space is not self._tenancy.space(None):
            space.operations.add(op_id)
        self._operations.accept(op_id, user_id, submitted, location, fails=fails)
        self._persist()  # accepted means kept: written before the 202 goes out
        url = f"{self.base_url}/{version}/dataPolicyOperations/{op_id}"
        return Reply(
            202,
            headers={"Location": url, "Operation-Location": url, "Retry-After": "60"},
        )

    def _poll(self, version: str, op_id: str, claims: Mapping[str, Any]) -> Reply:
        require(claims, READ_ROLE)
        space = self._tenancy.of(claims)
        try:
            space.quotas.charge_poll()
            # Another tenant's operation is unknown here, as Graph knows a tenant's only.
            view = self._operations.advance(op_id) if self._tenancy.owns(space, op_id) else None
        finally:
            self._persist()
        if view is None:
            raise GraphError(
                400, "OperationNotFound", f"The operation '{op_id}' could not be found."
            )
        payload = {
            "@odata.context": f"{self.base_url}/{version}/$metadata#dataPolicyOperations/$entity",
            **{k: v for k, v in view.to_json().items() if k != "filesWritten"},
        }
        return json_reply(200, payload)

    def _resolve(self, version: str, user: str, query: str, claims: Mapping[str, Any]) -> Reply:
        require(claims, READ_ROLE)
        found = self._tenancy.of(claims).directory.lookup(user, self.faults.missing_users)
        if found is None:
            raise user_not_found(user)
        oid, upn = found
        select = parse_qs(query).get("$select", ["id,userPrincipalName"])[-1].split(",")
        record = {"id": oid, "userPrincipalName": upn}
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/{version}/$metadata#users(id)/$entity"
        }
        payload.update({k: record[k] for k in record if k in {s.strip() for s in select}})
        return json_reply(200, payload)

    # -- helpers ---------------------------------------------------------------------------

    def _restore(self) -> None:
        """Take back what the state file holds, if there is one (a restart)."""
        if self._state_file is None:
            return
        what = "the Graph simulator's operations, directory and id generator"
        data = read_json(self._state_file, what=what)
        if data is None:
            return
        try:
            if data.get("version") != _STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_STATE_VERSION}")
            if data["seed"] != self._seed:
                raise ValueError(f"written with seed {data['seed']}, started with {self._seed}")
            version, internal, gauss = data["ids"]
            self._directory.replace(data["directory"])
            self._operations.restore(data["operations"])
            if "quotas" in data:  # absent in a file written before the quotas were kept
                self._quotas.restore(data["quotas"])
            self._tenancy.restore(data.get("tenants", {}))  # absent before tenants existed
            with self._lock:
                self._ids.setstate((version, tuple(internal), gauss))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise unreadable(self._state_file, what, f"{type(error).__name__}: {error}") from None
        log.info(
            "graph simulator: %d operations restored from %s",
            len(data["operations"]),
            self._state_file,
        )

    def _persist(self) -> None:
        """Write the state file if anything changed; one writer at a time, newest last."""
        if self._state_file is None:
            return
        with self._persist_lock:
            with self._lock:
                ids = self._ids.getstate()
            state = {
                "version": _STATE_VERSION,
                "seed": self._seed,
                "ids": [ids[0], list(ids[1]), ids[2]],
                "directory": self._directory.users(),
                "operations": self._operations.snapshot(),
                "quotas": self._quotas.snapshot(),
                "tenants": self._tenancy.snapshot(),
            }
            text = json.dumps(state, sort_keys=True)
            if text != self._persisted:
                write_atomically(self._state_file, text, private=True)
                self._persisted = text

    def _new_guid(self) -> str:
        """Seeded, so that the same run of requests gets the same ids."""
        with self._lock:
            return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _tick_forever(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - a dead ticker would freeze every export
                # Type only: storage errors can quote request URLs, signature included.
                log.warning("graph simulator tick failed: %s", type(error).__name__)
