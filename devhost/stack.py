"""Everything Azure would provide, on loopback, around the unchanged ``function_app.py``.

The stack starts only what the settings do not already point at, so the same code serves three
uses: ``make demo`` (everything local), ``python -m devhost serve`` (interactive, optionally
against another Graph with ``--graph``), and end-to-end tests that keep storage, identity and
Graph in the test process and restart only the host, as Azure restarts a worker.

Settings reach the app the way the Functions host delivers them: as process environment, from
``local.settings.json`` ``Values`` first, never overriding what the environment already says.

A restart on the same state directory is a restart of the Functions host only: what Azure's
services would still hold is kept there and taken back. The fast clock's virtual time
(``clock.json``), the ports of the services the stack starts (``ports.json``: the export SAS
URLs Graph holds name Azurite's blob port, the operation URLs in the task hub name Graph's),
Azurite's data, and the Graph simulator's operations (``graph-simulator.json``). Each file is
written atomically, and one that cannot be read stops the start: silently starting afresh
would fail every DSR in flight.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from devhost._service import Service
from devhost._state import (
    LockHeldError,
    PortInUseError,
    StateInUseError,
    hold_lock,
    read_json,
    release_lock,
    unreadable,
    write_atomically,
)
from devhost.azurite import ACCOUNT_KEY, Azurite
from devhost.durable import DurableEngine, FastClock, RpcServer
from devhost.entra import CUSTOMER_TENANTS, MULTI_TENANT_CLIENT_ID, EntraTenant
from devhost.entra import KEYS_FILE as ENTRA_KEYS_FILE
from devhost.functions_host import FunctionsHost
from devhost.graph import DEMO_DIRECTORY, GraphSimulator
from devhost.graph.tenancy import customer_directory
from devhost.identity import GRAPH_RESOURCE, ManagedIdentityEndpoint
from devhost.keys import KEYS_FILE, KeyRing
from devhost.keyvault import APP_ACTIONS, VAULT_HOST, KeyVaultEmulator, VaultProxy
from devhost.local_settings import load_local_settings
from devhost.platform_auth import PlatformAuth
from devhost.tls import TlsFiles, covers_hosts, make_tls_files
from devhost.triggers.queue import QueueOptions

REPO_ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS_FILE = "endpoints.json"
CLOCK_FILE = "clock.json"
PORTS_FILE = "ports.json"
LOCK_FILE = "host.lock"
GRAPH_STATE_FILE = "graph-simulator.json"
KEYVAULT_STATE_FILE = "keyvault.json"
_CLOCK_SAVE_INTERVAL_S = 0.5
_log = logging.getLogger("devhost")


@dataclass
class StackOptions:
    """How to run the stack; every field has a default fit for ``make demo``."""

    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".devhost")
    app_dir: Path = REPO_ROOT
    port: int = 0
    function_key: str | None = None
    speed: float = 1.0
    graph_url: str | None = None
    settings_file: Path | None = None
    sas_mode: str | None = None
    export_duration: timedelta = timedelta(days=3)
    seed: int = 0
    workers: int = 4
    #: Read ``local.settings.json`` like Core Tools; the demo doesn't (it must never reach a
    #: real tenant configured there).
    use_local_settings: bool = True
    #: Play App Service authentication (Entra ID) in front of the app, as the Bicep deploys it
    #: (a second wall: the app validates callers' tokens itself, with or without it).
    platform_auth: bool = True
    #: ``module:function`` the host calls with its clock after loading the app, so that the
    #: app's own timestamps follow ``--speed`` (the orchestrations' do by replay); "" for none.
    clock_seam: str = "dsr_export.composition:use_clock"


class DevStack(Service):
    """Azurite, managed identity, Graph simulator, durable engine and trigger host."""

    def __init__(
        self, options: StackOptions, environ: MutableMapping[str, str] | None = None
    ) -> None:
        self.options = options
        self.environ = os.environ if environ is None else environ
        self.function_key = options.function_key or ""
        self.azurite: Azurite | None = None
        self.identity: ManagedIdentityEndpoint | None = None
        self.graph: GraphSimulator | None = None
        self.engine: DurableEngine | None = None
        self.host: FunctionsHost | None = None
        self.clock: FastClock | None = None
        self.functions: list[Any] = []
        self.platform_auth: PlatformAuth | None = None
        self.tenant: EntraTenant | None = None
        self.keys: KeyRing | None = None
        self.keyvault: KeyVaultEmulator | None = None
        self.vault_proxy: VaultProxy | None = None
        self._rpc: RpcServer | None = None
        self._stack = contextlib.ExitStack()
        self._queue_options = QueueOptions()
        self.state_dir = options.state_dir.resolve()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        """Start, in order, what the settings do not already point at, then the app."""
        state = self.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self._claim(state)
        env = self.environ
        host_json = self._settle(state, env)
        tls = self._tls(state)
        self.clock = FastClock(self.options.speed, start=resume_clock(state / CLOCK_FILE))
        self._keep_clock(state / CLOCK_FILE, self.clock)
        ports = _load_ports(state / PORTS_FILE)
        if "AzureWebJobsStorage" not in env:
            self._start_azurite(state, tls, env, ports)
        if self.options.graph_url:
            env["GRAPH_BASE_URL"] = self.options.graph_url
        elif "GRAPH_BASE_URL" not in env:
            self._start_graph(state, tls, env, ports)
        if "IDENTITY_ENDPOINT" not in env:
            # Admin consent, as it shows in app-only tokens: the Graph app roles, for whatever
            # Graph the app was pointed at (a token's audience is that Graph's own URL).
            graph_roles = ("User.Export.All", "User.Read.All")
            roles = {GRAPH_RESOURCE: graph_roles, env["GRAPH_BASE_URL"]: graph_roles}
            self.identity = self._enter(ManagedIdentityEndpoint(roles=roles))
            env.update(self.identity.env())
        if "RECEIPT_SIGNING_KEY_ID" not in env:
            self._start_keyvault(state, tls, env)
        if "AUTH_CLIENT_ID" not in env:
            # Entra ID for the callers: the app reads its tenant's OpenID metadata and keys at
            # the authority its settings name, here the local tenant's, over the same TLS.
            self.tenant = start_tenant(tls, ports.get("entra", 0), state / ENTRA_KEYS_FILE)
            self._stack.callback(self.tenant.stop)
            ports["entra"] = self.tenant.port
            _save_ports(state / PORTS_FILE, ports)
            env.update(self.tenant.app_settings())
        if self.tenant is not None and self.identity is not None:
            self._federate(env)
        if self.options.platform_auth and self.tenant is not None:
            self.platform_auth = PlatformAuth(self.tenant)
            env.update(self.platform_auth.app_settings())
        self._start_app(state, env, host_json)
        self._write_endpoints(state)

    def _claim(self, state: Path) -> None:
        """One host per state directory: a second would take the first's Azurite for the
        leftover of a killed host. Released by the kernel however this process ends."""
        try:
            self._stack.callback(release_lock, hold_lock(state / LOCK_FILE))
        except LockHeldError as error:
            raise StateInUseError(
                f"another offline host (pid {error.holder}) is running on {state}: stop it "
                "first, or give this one another --state"
            ) from None

    def _settle(self, state: Path, env: MutableMapping[str, str]) -> dict[str, Any]:
        """The app's settings (local.settings.json, the options), its keys and its host.json."""
        if self.options.use_local_settings:
            settings_file = (
                self.options.settings_file or self.options.app_dir / "local.settings.json"
            )
            load_local_settings(settings_file, environ=env)
        # Azure's key model: a master key, host keys (``default`` valid for every function) and
        # per-function keys, kept in the state dir across restarts. --function-key (else
        # DEVHOST_FUNCTION_KEY) sets the default host key; without either the stored one stays.
        given = self.function_key or env.get("DEVHOST_FUNCTION_KEY") or None
        self.keys = KeyRing.load_or_create(state / KEYS_FILE, default_host_key=given)
        self.function_key = self.keys.default_host_key
        if self.options.sas_mode:
            env["EXPORT_SAS_MODE"] = self.options.sas_mode
        host_json: dict[str, Any] = json.loads(
            (self.options.app_dir / "host.json").read_text(encoding="utf-8")
        )
        self._queue_options = QueueOptions.from_host_json(host_json)
        return host_json

    def _start_azurite(
        self, state: Path, tls: TlsFiles, env: MutableMapping[str, str], ports: dict[str, Any]
    ) -> None:
        azurite = Azurite(tls, location=state / "azurite", ports=ports.get("azurite"))
        with self._same_port("Azurite", "the export SAS URLs Graph holds point"):
            self.azurite = self._enter(azurite)
        ports["azurite"] = self.azurite.ports
        _save_ports(state / PORTS_FILE, ports)
        env["AzureWebJobsStorage"] = self.azurite.connection_string
        env.setdefault("EXPORT_STORAGE_BLOB_ENDPOINT", self.azurite.blob_endpoint)
        # One emulator account offline; its own (identity-only) account in Azure.
        env.setdefault("EVIDENCE_STORAGE_BLOB_ENDPOINT", self.azurite.blob_endpoint)
        if env.get("EXPORT_SAS_MODE", "stored-policy") == "stored-policy":
            env.setdefault("EXPORT_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY)

    def _start_graph(
        self, state: Path, tls: TlsFiles, env: MutableMapping[str, str], ports: dict[str, Any]
    ) -> None:
        assert self.clock is not None
        simulator = GraphSimulator(
            tls,
            clock=self.clock.now,
            export_duration=self.options.export_duration,
            seed=self.options.seed,
            port=ports.get("graphSimulator", 0),
            state_file=state / GRAPH_STATE_FILE,
        )
        with self._same_port("the Graph simulator", "the operation URLs in the task hub point"):
            self.graph = self._enter(simulator)
        ports["graphSimulator"] = self.graph.port
        _save_ports(state / PORTS_FILE, ports)
        env["GRAPH_BASE_URL"] = self.graph.base_url

    def _federate(self, env: MutableMapping[str, str]) -> None:
        """The multi-tenant app of docs/deploy.md, offline (docs/devhost.md, "Several tenants").

        Registered in the local Entra with one federated identity credential trusting the local
        managed identity, whose exchange tokens the Entra's key now signs; the first two
        customer tenants consent, the third does not. The Graph simulator serves each customer
        tenant its own directory (the demo's UPNs, other people) and quotas. With
        ``TENANCY=multi`` the app is pointed at it: ``MULTI_TENANT_CLIENT_ID``, and
        ``AZURE_AUTHORITY_HOST`` (azure-identity's own setting for the login host) at the local
        Entra. Nothing changes for a single-tenant app, which never asks the token endpoint.
        """
        tenant, identity = self.tenant, self.identity
        assert tenant is not None
        assert identity is not None
        tenant.register_multi_tenant_app(
            home_tenant=identity.tenant_id, identity_object_id=identity.object_id
        )
        identity.federate(tenant.sign, tenant.issuer_of(identity.tenant_id))
        for customer in CUSTOMER_TENANTS[:2]:
            tenant.consent(customer)
        if self.graph is not None:
            for customer in CUSTOMER_TENANTS:
                self.graph.add_tenant(customer, customer_directory(customer, [*DEMO_DIRECTORY]))
        if env.get("TENANCY", "").strip().lower() == "multi":
            env.setdefault("MULTI_TENANT_CLIENT_ID", MULTI_TENANT_CLIENT_ID)
            env.setdefault("AZURE_AUTHORITY_HOST", tenant.authority)

    def _start_app(
        self, state: Path, env: MutableMapping[str, str], host_json: dict[str, Any]
    ) -> None:
        """The app itself: its functions, the Durable engine and client API, the host."""
        assert self.clock is not None
        self.functions = functions = _load_app(self.options.app_dir)
        _install_clock(self.options.clock_seam, self.clock.now)
        self.engine = DurableEngine(
            functions,
            str(state / "taskhub.sqlite"),
            clock=self.clock,
            workers=self.options.workers,
        )
        self.engine.start()
        self._stack.callback(self.engine.stop)
        self._rpc = self._enter(RpcServer(self.engine))
        self.host = self._enter(
            FunctionsHost(
                functions,
                keys=self.keys,
                client_binding=self._rpc.client_binding,
                queue_connection=lambda name: env[name],
                host_json=host_json,
                port=self.options.port,
                platform_auth=self.platform_auth,
                tenant=self.tenant,
            )
        )

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; idempotent."""
        self._stack.close()

    # -- what callers use ------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT/api``."""
        assert self.host is not None
        return f"{self.host.base_url}/api"

    def endpoints(self) -> dict[str, Any]:
        """What a client needs to talk to this stack (the function key included)."""
        return {
            "api": self.api_url,
            "functionKey": self.function_key,
            "masterKey": self.keys.master_key if self.keys else None,
            "hostKeys": self.keys.host_keys() if self.keys else {},
            "functionKeys": (
                {name: self.keys.function_keys(name) for name in self.keys.functions()}
                if self.keys
                else {}
            ),
            "graph": self.environ.get("GRAPH_BASE_URL"),
            "graphSimulator": self.graph.base_url if self.graph else None,
            "blob": self.environ.get("EXPORT_STORAGE_BLOB_ENDPOINT"),
            "storageConnection": self.environ.get("AzureWebJobsStorage"),
            "caBundle": self.environ.get("REQUESTS_CA_BUNDLE"),
            "keyVault": self.keyvault.vault_url if self.keyvault else None,
            "receiptKey": self.environ.get("RECEIPT_SIGNING_KEY_ID"),
            "httpsProxy": self.vault_proxy.url if self.vault_proxy else None,
            "queueMessageEncoding": self._queue_options.message_encoding,
            "state": str(self.state_dir),
            "taskHub": str(self.state_dir / "taskhub.sqlite"),
            "tokenEndpoint": (
                f"{self.host.base_url}/.auth/devhost/token" if self.host and self.tenant else None
            ),
            "rotateEndpoint": (
                f"{self.host.base_url}/.auth/devhost/rotate" if self.host and self.tenant else None
            ),
            "authority": self.environ.get("AUTH_AUTHORITY_HOST"),
            "platformAuth": self.platform_auth is not None,
            "speed": self.options.speed,
            "pid": os.getpid(),
        }

    # -- helpers ---------------------------------------------------------------------------

    def _start_keyvault(self, state: Path, tls: TlsFiles, env: MutableMapping[str, str]) -> None:
        """The local Key Vault with the receipt key, reached as Azure's is (devhost/keyvault.py).

        The app's identity gets what infra grants it on the key (read and sign); the keys stay
        in the state directory, so receipts signed before a restart still verify after it.
        The proxy settings go to the whole host process, loopback excepted, as a corporate
        proxy's would: the app's code is unchanged, only its settings point at this vault.
        """
        assert self.clock is not None
        vault = KeyVaultEmulator(tls, state_file=state / KEYVAULT_STATE_FILE, clock=self.clock.now)
        self.keyvault = self._enter(vault)
        principal = (self.identity or ManagedIdentityEndpoint()).object_id
        # Key Vault Secrets User too: each tenant's callback secret (TENANCY=multi).
        vault.grant(principal, APP_ACTIONS | {"getSecret"})
        vault.ensure_key()
        self.vault_proxy = self._enter(VaultProxy({VAULT_HOST: vault.port}))
        env.update(self.vault_proxy.env(env))
        env["RECEIPT_SIGNING_KEY_ID"] = vault.key_id()

    def _enter(self, component: Any) -> Any:
        return self._stack.enter_context(component)

    def _tls(self, state: Path) -> TlsFiles:
        """One throwaway certificate for every local HTTPS server.

        Clients trust it through ``REQUESTS_CA_BUNDLE`` (requests and the Azure SDKs honour it),
        pointed at a bundle of this certificate plus whatever bundle was configured before, so
        that a machine-wide CA setting keeps working.
        """
        tls_dir = state / "tls"
        cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
        tls = TlsFiles(cert, key) if cert.exists() and key.exists() else make_tls_files(tls_dir)
        if not covers_hosts(tls):
            tls = make_tls_files(tls_dir)
        bundle = tls_dir / "ca-bundle.pem"
        parts = [cert.read_text(encoding="ascii")]
        previous = self.environ.get("REQUESTS_CA_BUNDLE")
        if previous and Path(previous).is_file() and Path(previous) != bundle:
            parts.append(Path(previous).read_text(encoding="utf-8", errors="ignore"))
        bundle.write_text("\n".join(parts), encoding="utf-8")
        self.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        return tls

    def _keep_clock(self, path: Path, clock: FastClock) -> None:
        """Save virtual time every half second, and once more when the stack has stopped.

        Each periodic save also says how far virtual time gets before the next one is due, with
        a half-second's slack (``upTo``): after a kill the clock resumes there, not behind a
        timestamp the engine or the simulator wrote just before it died. The
        last save is registered before anything else starts, so it runs after everything else
        stopped, and it is exact: no timestamp the engine or the simulator wrote lies beyond it.
        """
        stop = threading.Event()
        ahead = timedelta(seconds=_CLOCK_SAVE_INTERVAL_S * 2 * clock.speed)

        def keep() -> None:
            failing = False
            while not stop.wait(_CLOCK_SAVE_INTERVAL_S):
                try:
                    now = clock.now()
                    save_clock(path, now, up_to=now + ahead)
                    failing = False
                except OSError as error:
                    if not failing:
                        _log.warning("could not save the fast clock to %s: %s", path, error)
                    failing = True

        saver = threading.Thread(target=keep, name="devhost-clock-saver", daemon=True)
        saver.start()

        def last_save() -> None:
            stop.set()
            saver.join(timeout=5)
            save_clock(path, clock.now())

        self._stack.callback(last_save)

    @contextlib.contextmanager
    def _same_port(self, service: str, why: str) -> Iterator[None]:
        """Turn a taken port into the message a person needs."""
        try:
            yield
        except PortInUseError as error:
            state = self.state_dir
            raise PortInUseError(
                error.port,
                f"{service} must come back on port {error.port}, where {why}, but the port is "
                f"in use. Is another `python -m devhost serve --state {state}` still running, or "
                "has another program taken the port? Stop it and start again. (The port is kept in "
                f"{state / PORTS_FILE}; deleting that file moves the service to a new port and "
                "fails the DSRs in flight.)",
            ) from None

    def _write_endpoints(self, state: Path) -> None:
        path = state / ENDPOINTS_FILE
        # The function key and the storage connection are in it: owner-only.
        write_atomically(path, json.dumps(self.endpoints(), indent=2), private=True)
        self._stack.callback(lambda: path.unlink(missing_ok=True))


def save_clock(path: Path, now: datetime, *, up_to: datetime | None = None) -> None:
    """Write virtual ``now`` to ``path`` in one step: a kill leaves the old time or the new.

    ``up_to``: the furthest virtual time can get before the next save (a kill in between
    resumes there); ``now`` when this is the last save of a host that stops.
    """
    up_to = max(now, up_to or now)
    write_atomically(path, json.dumps({"now": now.isoformat(), "upTo": up_to.isoformat()}))


def resume_clock(path: Path) -> datetime | None:
    """Where virtual time resumes, None on a first start (no file).

    The saved ``upTo`` (else ``now``), never before real time: virtual time does not run
    backwards across a restart, nor (within the saver's slack) across a kill. A file that is
    there but unreadable (empty, torn, not a time) raises StateFileError: falling back to real
    time would put every durable timer in the task hub days ahead, without a word.
    """
    what = "the fast clock's virtual time, which the task hub's durable timers are set in"
    data = read_json(path, what=what)
    if data is None:
        return None
    try:
        saved = [datetime.fromisoformat(data[key]) for key in ("now", "upTo") if key in data]
        if "now" not in data:
            raise KeyError("now")
        if any(value.tzinfo is None for value in saved):
            raise ValueError("a time without a time zone")
    except (KeyError, TypeError, ValueError) as error:
        raise unreadable(path, what, f"{type(error).__name__}: {error}") from None
    return max(datetime.now(UTC), *saved)


def start_tenant(tls: TlsFiles, port: int, keys_file: Path) -> EntraTenant:
    """The local Entra tenant, started on ``port`` if it is free, else on another one.

    The same port as before keeps tokens minted before a restart valid (their issuer names it);
    nothing durable depends on it, so unlike Graph's a taken port costs only those tokens.
    """
    try:
        return EntraTenant(tls, port=port, state_file=keys_file).start()
    except PortInUseError:
        _log.warning("the local Entra tenant's port %s is taken; tokens minted before fail", port)
        return EntraTenant(tls, state_file=keys_file).start()


def _load_ports(path: Path) -> dict[str, Any]:
    """The ports the stack's services had: ``{"azurite": {...}, "graphSimulator": N}``."""
    what = "the ports of Azurite and the Graph simulator, which URLs in flight point at"
    data = read_json(path, what=what)
    if data is None:
        return {}
    azurite = data.get("azurite", {}) if isinstance(data, dict) else None
    graph = data.get("graphSimulator", 0) if isinstance(data, dict) else None
    valid = (
        isinstance(azurite, dict)
        and all(isinstance(k, str) and _is_port(v) for k, v in azurite.items())
        and (graph == 0 or _is_port(graph))
    )
    if not valid:
        raise unreadable(path, what, "not a map of service names to port numbers")
    assert isinstance(data, dict)
    return data


def _save_ports(path: Path, ports: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(ports, indent=2, sort_keys=True))


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _install_clock(seam: str, clock: Any) -> None:
    """Hand the app the host's clock through its seam, when the app has that seam."""
    if not seam:
        return
    module_name, _, function = seam.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        _log.info("clock seam %s not in this app: its timestamps use real time", module_name)
        return
    getattr(module, function)(clock)


def _load_app(app_dir: Path) -> list[Any]:
    """Import ``function_app`` as the Python worker does: the app folder on ``sys.path``."""
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module = importlib.import_module("function_app")
    return list(module.app.get_functions())
