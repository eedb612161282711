"""HTTP triggers: route templates, auth levels and a threaded loopback server.

Behaviour follows the Functions host where the app can observe it: the `/api` route prefix from
host.json, ASP.NET-style route templates, the access key in `x-functions-key` or `code`, and a
500 with an empty body when the function raises (the exception text may carry personal data and
must not reach the caller).

Keys follow Azure's model (``devhost/keys.py``): a `function`-level route takes any host key, a
key of that function, or the master key; an `admin`-level route the master key only; another
function's key is a wrong key. The runtime's key API is served as the host serves it, outside the
route prefix and for the master key only (``KeysController``): `GET /admin/host/keys` (the host
keys; the master key is `GET /admin/host/systemkeys/_master`), `GET /admin/functions/{name}/keys`,
one key at `.../keys/{keyName}`, which `POST` (a generated value) or `PUT` (`{"name": "…",
"value": "…"}`) creates or replaces: 201 when created, 200 when replaced. Without a valid key the
answer is 401; with a valid key that is not the master key, 403 (ASP.NET Core's policy
evaluation: authenticated, not authorized).

The host's own refusals come before the app and have empty bodies, no `Content-Type`, as the
Functions host (azure-functions-host 4.x on Kestrel) answers them:

- 401 for a missing or wrong key (the host's ``UnauthorizedResult``: no `WWW-Authenticate`).
  The key is the `x-functions-key` header when that header is sent at all (even empty), else
  the first `code` query value (``AuthenticationLevelHandler``).
- 404 for a path no route matches, and for a method the matching route does not take: the
  host maps each function with an ``HttpMethodRouteConstraint``, so a wrong method is no match
  (never a 405; azure-functions-host#10098, #11625). Any method token reaches routing.
- 414 for a request line (method, target, version) over Kestrel's ``MaxRequestLineSize``,
  8 KiB; 431 for headers over ``MaxRequestHeadersTotalSize`` (32 KiB) or more than
  ``MaxRequestHeaderCount`` (100; the stdlib's parser here already stops at 99); 400 for a
  request that cannot be parsed. Kestrel closes the connection after these (`Connection: close`).
- 500 for a body over the host's limit, 100 MB (``ScriptConstants.DefaultMaxRequestBodySize``,
  or ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``): Kestrel throws when the body is read, after routing
  and the key check, and the host's exception handling turns that into a 500, not Kestrel's 413
  (azure-functions-host#10519).

The module is the server's front: ``http_wire`` parses and writes HTTP as Kestrel does,
``http_routes`` compiles and matches route templates, ``http_admin`` serves the host's own
endpoints (key API, manual runs, the local tenant's hooks); this one routes a request through
App Service authentication, the host endpoints and the app's routes to the function.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from devhost.entra import EntraTenant
from devhost.keys import KeyRing, key_ring
from devhost.platform_auth import InvalidToken, PlatformAuth, strip_principal
from devhost.triggers.common import Invoker, log_invocation, new_invocation_id
from devhost.triggers.http_admin import HostEndpoints
from devhost.triggers.http_routes import HttpRoute, RouteTemplate, compile_route, routes_for
from devhost.triggers.http_wire import (
    BODY_SIZE_LIMIT_SETTING,
    MAX_BODY_BYTES,
    MAX_REQUEST_HEADERS_BYTES,
    MAX_REQUEST_LINE_BYTES,
    Reply,
    ThreadedServer,
    body_size_limit,
    make_handler,
    presented_key,
    to_reply,
)

log = logging.getLogger("devhost.functions")

__all__ = [
    "BODY_SIZE_LIMIT_SETTING",
    "MAX_BODY_BYTES",
    "MAX_REQUEST_HEADERS_BYTES",
    "MAX_REQUEST_LINE_BYTES",
    "HttpRoute",
    "HttpTriggerServer",
    "RouteTemplate",
    "body_size_limit",
    "compile_route",
    "routes_for",
]


class HttpTriggerServer:
    """Serves HTTP-triggered functions on a loopback port, one thread per connection."""

    def __init__(
        self,
        routes: Sequence[HttpRoute],
        invoker: Invoker,
        *,
        function_key: str | None = None,
        keys: KeyRing | None = None,
        route_prefix: str,
        host: str = "127.0.0.1",
        port: int = 0,
        platform_auth: PlatformAuth | None = None,
        tenant: EntraTenant | None = None,
        function_names: Iterable[str] = (),
        run_function: Callable[[str], bool] | None = None,
    ) -> None:
        """``keys`` is the key ring; ``function_key`` instead makes one in memory with that as
        its ``default`` host key. ``function_names`` are the app's other functions (queue,
        timer, durable), whose keys the admin API also serves. ``tenant`` is the local Entra
        tenant whose tokens ``/.auth/devhost/token`` mints; ``platform_auth`` (App Service
        authentication in front of the app) is the tenant's too when both are given."""
        self._keys = key_ring(function_key, keys)
        self._routes = sorted(routes, key=lambda r: r.template.precedence)
        self._keys.ensure_functions(r.spec.name for r in self._routes)
        functions = {n.lower() for n in function_names} | {
            r.spec.name.lower() for r in self._routes
        }
        self._platform_auth = platform_auth
        self._endpoints = HostEndpoints(
            self._keys,
            functions,
            tenant=tenant or (platform_auth.tenant if platform_auth else None),
            run_function=run_function,
        )
        self._invoker = invoker
        self._prefix = route_prefix.strip("/")
        handler = make_handler(self._dispatch, body_size_limit(os.environ))
        self._server = ThreadedServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def keys(self) -> KeyRing:
        return self._keys

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devhost-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def _dispatch(
        self, method: str, target: str, headers: Mapping[str, str], read_body: Callable[[], bytes]
    ) -> Reply:
        split = urlsplit(target)
        # App Service authentication runs before the Functions host: it owns /.auth/, drops any
        # client-sent principal headers, and turns a valid bearer token into its own.
        headers = strip_principal(headers)
        query = parse_qsl(split.query, keep_blank_values=True)
        key = presented_key(headers, query)
        base = f"http://{headers.get('host') or self.base_url.removeprefix('http://')}"
        answered = self._endpoints.auth_hook(method, split.path, key, read_body)
        if answered is not None:
            return answered
        principal = self._principal(headers)
        if isinstance(principal, Reply):
            return principal
        answered = self._endpoints.admin(method, split.path, key, base, read_body)
        if answered is not None:
            return answered
        found = self._route(method, split.path)
        if found is None:
            return Reply(HTTPStatus.NOT_FOUND)
        route, route_params = found
        if not self._keys.authorizes(route.auth_level, route.spec.name, key):
            return Reply(HTTPStatus.UNAUTHORIZED)
        request = func.HttpRequest(
            method=method,
            url=base + target,
            headers=principal,
            params=_joined(query),
            route_params=route_params,
            body=read_body(),
        )
        return self._invoke(route, request)

    def _principal(self, headers: Mapping[str, str]) -> Mapping[str, str] | Reply:
        """The headers with App Service's principal added for a valid bearer token, or its 401
        for an invalid one; unchanged without platform authentication or a bearer token."""
        authorization = headers.get("authorization", "")
        if self._platform_auth is None or not authorization.lower().startswith("bearer "):
            return headers
        try:
            return {**headers, **self._platform_auth.principal_headers(authorization)}
        except InvalidToken:
            challenge = 'Bearer error="invalid_token"'
            return Reply(HTTPStatus.UNAUTHORIZED, [("WWW-Authenticate", challenge)])

    def _route(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The app's route for ``path`` (after the route prefix) and its values, or None. The
        method is part of the match: a route that does not take it is no route (404)."""
        if self._prefix:
            prefix = self._prefix.lower().split("/")
            segments = path.strip("/").split("/")
            if [s.lower() for s in segments[: len(prefix)]] != prefix:
                return None
            path = "/".join(segments[len(prefix) :])
        for route in self._routes:
            if route.methods is None or method in route.methods:
                values = route.template.match(path)
                if values is not None:
                    return route, values
        return None

    def _invoke(self, route: HttpRoute, request: func.HttpRequest) -> Reply:
        """Runs the function; what it raises is a 500 with an empty body, logged by id only."""
        invocation_id = new_invocation_id()
        started = time.monotonic()
        try:
            reply = to_reply(self._invoker.invoke(route.spec, request, invocation_id))
        except Exception:
            log.exception(
                "function %s raised; answering 500 (invocation_id=%s)",
                route.spec.name,
                invocation_id,
            )
            reply = Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
        log_invocation(
            route.spec,
            reply.status,
            time.monotonic() - started,
            invocation_id,
            method=request.method,
            route=route.template.template,
        )
        return reply


def _joined(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Query values by name, a repeated name's values joined with commas (as the worker)."""
    params: dict[str, str] = {}
    for name, value in query:
        params[name] = f"{params[name]},{value}" if name in params else value
    return params
