"""Everything Azure would provide, on loopback, around the unchanged ``function_app.py``.

The stack starts only what the settings do not already point at, so the same code serves three
uses: ``make demo`` (everything local), ``python -m devhost serve`` (interactive, optionally
against another Graph with ``--graph``), and end-to-end tests that keep storage, identity and
Graph in the test process and restart only the host, as Azure restarts a worker.

Settings reach the app the way the Functions host delivers them: as process environment, from
``local.settings.json`` ``Values`` first, never overriding what the environment already says.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from devhost._service import Service
from devhost.azurite import ACCOUNT_KEY, Azurite
from devhost.durable import DurableEngine, FastClock, RpcServer
from devhost.functions_host import FunctionsHost
from devhost.graph import GraphSimulator
from devhost.identity import GRAPH_RESOURCE, ManagedIdentityEndpoint
from devhost.local_settings import load_local_settings
from devhost.platform_auth import PlatformAuth
from devhost.tls import TlsFiles, make_tls_files

REPO_ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS_FILE = "endpoints.json"
_CLOCK_FILE = "clock.json"
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
    #: Play App Service authentication (Entra ID) in front of the app, as the Bicep deploys it.
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
        self._rpc: RpcServer | None = None
        self._stack = contextlib.ExitStack()
        self._stop_saving = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        env = self.environ
        if self.options.use_local_settings:
            settings_file = (
                self.options.settings_file or self.options.app_dir / "local.settings.json"
            )
            load_local_settings(settings_file, environ=env)
        # The key: --function-key, else DEVHOST_FUNCTION_KEY (environment or local.settings.json
        # Values), else a random one that `serve` prints.
        self.function_key = (
            self.function_key or env.get("DEVHOST_FUNCTION_KEY") or secrets.token_urlsafe(18)
        )
        if self.options.sas_mode:
            env["EXPORT_SAS_MODE"] = self.options.sas_mode
        tls = self._tls(state)
        self.clock = FastClock(self.options.speed, start=self._resume_clock(state))

        if "AzureWebJobsStorage" not in env:
            self.azurite = self._enter(Azurite(tls, location=state / "azurite"))
            env["AzureWebJobsStorage"] = self.azurite.connection_string
            env.setdefault("EXPORT_STORAGE_BLOB_ENDPOINT", self.azurite.blob_endpoint)
            if env.get("EXPORT_SAS_MODE", "stored-policy") == "stored-policy":
                env.setdefault("EXPORT_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY)
        if self.options.graph_url:
            env["GRAPH_BASE_URL"] = self.options.graph_url
        elif "GRAPH_BASE_URL" not in env:
            self.graph = self._enter(
                GraphSimulator(
                    tls,
                    clock=self.clock.now,
                    export_duration=self.options.export_duration,
                    seed=self.options.seed,
                )
            )
            env["GRAPH_BASE_URL"] = self.graph.base_url
        if "IDENTITY_ENDPOINT" not in env:
            # Admin consent, as it shows in app-only tokens: the Graph app roles, for whatever
            # Graph the app was pointed at (a token's audience is that Graph's own URL).
            graph_roles = ("User.Export.All", "User.Read.All")
            roles = {GRAPH_RESOURCE: graph_roles, env["GRAPH_BASE_URL"]: graph_roles}
            self.identity = self._enter(ManagedIdentityEndpoint(roles=roles))
            env.update(self.identity.env())

        if self.options.platform_auth:
            self.platform_auth = PlatformAuth()
            env.update(self.platform_auth.app_settings())
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
        host_json = json.loads((self.options.app_dir / "host.json").read_text(encoding="utf-8"))
        self.host = self._enter(
            FunctionsHost(
                functions,
                function_key=self.function_key,
                client_binding=self._rpc.client_binding,
                queue_connection=lambda name: env[name],
                host_json=host_json,
                port=self.options.port,
                platform_auth=self.platform_auth,
            )
        )
        saver = threading.Thread(target=self._save_clock, args=(state,), daemon=True)
        saver.start()
        self._stack.callback(self._stop_saving.set)
        self._write_endpoints(state)

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
            "graph": self.environ.get("GRAPH_BASE_URL"),
            "graphSimulator": self.graph.base_url if self.graph else None,
            "blob": self.environ.get("EXPORT_STORAGE_BLOB_ENDPOINT"),
            "storageConnection": self.environ.get("AzureWebJobsStorage"),
            "caBundle": self.environ.get("REQUESTS_CA_BUNDLE"),
            "taskHub": str(self.options.state_dir / "taskhub.sqlite"),
            "tokenEndpoint": (
                f"{self.host.base_url}/.auth/devhost/token"
                if self.host and self.platform_auth
                else None
            ),
            "speed": self.options.speed,
            "pid": os.getpid(),
        }

    # -- helpers ---------------------------------------------------------------------------

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
        bundle = tls_dir / "ca-bundle.pem"
        parts = [cert.read_text(encoding="ascii")]
        previous = self.environ.get("REQUESTS_CA_BUNDLE")
        if previous and Path(previous).is_file() and Path(previous) != bundle:
            parts.append(Path(previous).read_text(encoding="utf-8", errors="ignore"))
        bundle.write_text("\n".join(parts), encoding="utf-8")
        self.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        return tls

    def _resume_clock(self, state: Path) -> datetime | None:
        """Virtual time never runs backwards across a restart of the host."""
        try:
            saved = json.loads((state / _CLOCK_FILE).read_text(encoding="utf-8"))["now"]
        except (OSError, ValueError, KeyError):
            return None
        return max(datetime.now(UTC), datetime.fromisoformat(saved))

    def _save_clock(self, state: Path) -> None:
        while not self._stop_saving.wait(0.5):
            assert self.clock is not None
            payload = json.dumps({"now": self.clock.now().isoformat()})
            (state / _CLOCK_FILE).write_text(payload, encoding="utf-8")

    def _write_endpoints(self, state: Path) -> None:
        path = state / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.endpoints(), indent=2), encoding="utf-8")
        tmp.replace(path)
        self._stack.callback(lambda: path.unlink(missing_ok=True))


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
