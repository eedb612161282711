"""The trigger host: runs `function_app.py` offline through the SDK's real entry points.

Core Tools cannot run on these machines, so this host stands in for the Functions host for the
HTTP, queue and timer triggers, calling each function's worker entry point
(`get_user_function()`) with the arguments the Python worker would build from the raw bindings.
Orchestrators and activities are left to the durable engine (`devhost/durable/`).

Keys follow Azure's model (``devhost/keys.py``): pass ``keys=`` a ``KeyRing`` (master key, host
keys, per-function keys; ``KeyRing.load_or_create`` keeps one in the state directory), or
``function_key=`` alone, which becomes the ``default`` host key of a ring in memory (valid for
every function; the master key is then random, read it from ``host.keys.master_key``).

Usage::

    functions = app.get_functions()          # once per app object
    with FunctionsHost(
        functions,
        function_key="dev-key",                 # or keys=KeyRing.load_or_create(...)
        client_binding=engine.client_binding,
        queue_connection=connection_from_env,   # the default: app settings, as in Azure
        host_json=json.loads(Path("host.json").read_text()),
    ) as host:
        requests.get(f"{host.base_url}/api/exports/42", headers={"x-functions-key": "dev-key"})
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.functions.decorators.function_app import Function

from devhost._service import Service
from devhost.entra import EntraTenant
from devhost.keys import KeyRing, key_ring
from devhost.platform_auth import PlatformAuth
from devhost.triggers.common import (
    ClientBinding,
    FunctionSpec,
    Invoker,
    UnsupportedFunctionError,
    acquire_worker_loop,
    release_worker_loop,
)
from devhost.triggers.http import HttpTriggerServer, routes_for
from devhost.triggers.queue import QueueListener, QueueOptions, connection_from_env
from devhost.triggers.timer import TimerRunner

__all__ = ["FunctionsHost", "UnsupportedFunctionError", "connection_from_env"]

log = logging.getLogger("devhost.functions")


class FunctionsHost(Service):
    """HTTP, queue and timer triggers for a list of functions from `app.get_functions()`.

    Everything that can be checked without running (bindings against the Python signatures,
    route templates, schedules, the durable client wiring) is checked in the constructor, so a
    broken app fails before anything listens. Queue connection strings are resolved in `start()`,
    after local settings may have filled the environment; `queue_connection` defaults to
    `connection_from_env`. `port=0` picks a free port (read it back from `base_url`).
    """

    def __init__(
        self,
        functions: Sequence[Function],
        *,
        function_key: str | None = None,
        keys: KeyRing | None = None,
        client_binding: ClientBinding | None,
        queue_connection: Callable[[str], str] | None = None,
        host_json: Mapping[str, Any] | None = None,
        port: int = 0,
        platform_auth: PlatformAuth | None = None,
        tenant: EntraTenant | None = None,
    ) -> None:
        ring = key_ring(function_key, keys)
        host_json = host_json or {}
        specs, names = _selected(functions, host_json.get("functions"))
        invoker = Invoker(client_binding)
        for spec in specs:
            invoker.check(spec)
        route_prefix = _route_prefix(host_json)
        self._http = HttpTriggerServer(
            routes_for(specs),
            invoker,
            keys=ring,
            route_prefix=route_prefix,
            port=port,
            platform_auth=platform_auth,
            tenant=tenant,
            function_names=names,
            run_function=self._run_now,
        )
        options = QueueOptions.from_host_json(host_json)
        self._queues = [
            QueueListener(s, invoker, queue_connection or connection_from_env, options)
            for s in specs
            if s.trigger_type == "queueTrigger"
        ]
        self._timers = [TimerRunner(s, invoker) for s in specs if s.trigger_type == "timerTrigger"]
        self._started = False
        self._stopped = False

    def _run_now(self, name: str) -> bool:
        """Run a timer function now, as the admin API's ``POST /admin/functions/{name}`` does
        in Azure; False when no such timer function exists."""
        for timer in self._timers:
            if timer.spec.name.lower() == name.lower():
                timer.run_now()
                return True
        return False

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`, without the route prefix."""
        return self._http.base_url

    @property
    def keys(self) -> KeyRing:
        """The master key, host keys and function keys the HTTP routes check."""
        return self._http.keys

    def start(self) -> None:
        if self._started:
            raise RuntimeError("FunctionsHost.start() called twice")
        self._started = True
        acquire_worker_loop()
        self._http.start()
        try:
            for listener in self._queues:
                listener.start()
            for timer in self._timers:
                timer.start()
        except BaseException:
            self.stop()
            raise
        log.info(
            "functions host listening on %s (%d queue, %d timer functions)",
            self.base_url,
            len(self._queues),
            len(self._timers),
        )

    def stop(self) -> None:
        """Stops listening; running queue and timer invocations get up to 30 s to finish.

        HTTP requests already being served run on in their (daemon) threads.
        """
        if self._stopped:
            return
        self._stopped = True
        for timer in self._timers:
            timer.stop()
        for listener in self._queues:
            listener.stop()
        self._http.stop()
        if self._started:
            release_worker_loop()


def _selected(
    functions: Sequence[Function], selected: Sequence[str] | None
) -> tuple[list[FunctionSpec], list[str]]:
    """The specs of the functions this host runs (host.json's ``functions`` list, when given)
    and the names of all of them; two functions of one name are refused, as the host does."""
    specs = [s for f in functions if (s := FunctionSpec.from_function(f)) is not None]
    names = [str(f.get_function_name()) for f in functions]
    if selected is not None:
        specs = [s for s in specs if s.name in set(selected)]
        names = [n for n in names if n in set(selected)]
    spec_names = [s.name for s in specs]
    duplicates = sorted({n for n in spec_names if spec_names.count(n) > 1})
    if duplicates:
        raise UnsupportedFunctionError(f"duplicate function names: {duplicates}")
    return specs, names


def _route_prefix(host_json: Mapping[str, Any]) -> str:
    """host.json's ``extensions.http.routePrefix``; ``api`` when it says nothing."""
    http_section = (host_json.get("extensions") or {}).get("http") or {}
    return str(http_section.get("routePrefix", "api"))
