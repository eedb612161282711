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
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.entra import EntraTenant
from devhost.keys import MASTER_KEY_NAME, KeyRing, KeyRingError, key_ring
from devhost.platform_auth import InvalidToken, PlatformAuth, strip_principal
from devhost.triggers.common import FunctionSpec, Invoker, log_invocation, new_invocation_id

log = logging.getLogger("devhost.functions")

#: The Functions host's request body limit (``ScriptConstants.DefaultMaxRequestBodySize``).
MAX_BODY_BYTES = 104_857_600
#: The app setting that changes it, as in the Functions host (a whole number of bytes).
BODY_SIZE_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
#: Kestrel's defaults, which the Functions host keeps: the request line including its CRLF, and
#: the header section (each line with its CRLF).
MAX_REQUEST_LINE_BYTES = 8192
MAX_REQUEST_HEADERS_BYTES = 32_768
FUNCTION_KEY_HEADER = "x-functions-key"
FUNCTION_KEY_QUERY = "code"


def body_size_limit(env: Mapping[str, str]) -> int:
    """The body limit in force: ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` when it is a number."""
    try:
        return int(env.get(BODY_SIZE_LIMIT_SETTING, ""))
    except ValueError:
        return MAX_BODY_BYTES


@dataclass(frozen=True)
class _Param:
    name: str
    group: str
    constraints: tuple[str, ...]
    optional: bool
    default: str | None
    catch_all: bool


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template such as `exports/{requestId:guid}/{part?}`."""

    template: str
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (the part after the prefix, still percent-encoded)."""
        found = self.regex.fullmatch("/" + path.strip("/") if path.strip("/") else "")
        if found is None:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            raw = found.group(param.group)
            if raw is None or raw == "":
                if param.default is not None:
                    values[param.name] = param.default
                elif param.catch_all:
                    values[param.name] = ""
                continue
            value = unquote(raw)
            if not all(_constraint_ok(c, value) for c in param.constraints):
                return None
            values[param.name] = value
        return values


def compile_route(template: str) -> RouteTemplate:
    """Compiles an ASP.NET route template; unknown constraints are accepted, not enforced."""
    segments = [s for s in template.strip("/").split("/") if s != ""]
    pattern: list[str] = []
    params: list[_Param] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        parts = _split_segment(segment)
        if len(parts) == 1 and isinstance(parts[0], tuple):
            param = _parse_param(parts[0][0], f"g{len(params)}")
            if param.catch_all and index != len(segments) - 1:
                raise ValueError(f"catch-all parameter must be last in route {template!r}")
            params.append(param)
            if param.catch_all:
                pattern.append(f"(?:/(?P<{param.group}>.*))?")
                precedence.append(4)
            elif param.optional or param.default is not None:
                pattern.append(f"(?:/(?P<{param.group}>[^/]+))?")
                precedence.append(3)
            else:
                pattern.append(f"/(?P<{param.group}>[^/]+)")
                precedence.append(1 if param.constraints else 2)
            continue
        piece = ["/"]
        has_param = False
        for part in parts:
            if isinstance(part, str):
                piece.append(re.escape(part))
            else:
                param = _parse_param(part[0], f"g{len(params)}")
                if param.catch_all or param.optional:
                    raise ValueError(f"optional or catch-all parameter inside {segment!r}")
                params.append(param)
                piece.append(f"(?P<{param.group}>[^/]+?)")
                has_param = True
        pattern.append("".join(piece))
        precedence.append(1 if has_param else 0)
    regex = re.compile("".join(pattern), re.IGNORECASE)
    return RouteTemplate(template, regex, tuple(params), tuple(precedence))


def _split_segment(segment: str) -> list[str | tuple[str]]:
    """Splits a segment into literals and `{...}` parameter bodies (tuples), honouring `{{`."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "{" and segment[i : i + 2] == "{{":
            literal.append("{")
            i += 2
        elif char == "}" and segment[i : i + 2] == "}}":
            literal.append("}")
            i += 2
        elif char == "{":
            depth, j = 0, i + 1
            while j < len(segment):
                if segment[j] == "(":
                    depth += 1
                elif segment[j] == ")":
                    depth -= 1
                elif segment[j] == "}" and depth == 0:
                    if segment[j : j + 2] == "}}":  # escaped brace inside a regex constraint
                        j += 2
                        continue
                    break
                j += 1
            else:
                raise ValueError(f"unbalanced '{{' in route segment {segment!r}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((segment[i + 1 : j].replace("{{", "{").replace("}}", "}"),))
            i = j + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _parse_param(body: str, group: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    pieces: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(body):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == ":" and depth == 0:
            pieces.append(body[start:i])
            start = i + 1
    pieces.append(body[start:])
    optional = pieces[-1].endswith("?")
    if optional:
        pieces[-1] = pieces[-1][:-1]
    name, default = pieces[0], None
    if "=" in name:
        name, default = name.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise ValueError(f"bad route parameter name {name!r}")
    return _Param(name, group, tuple(pieces[1:]), optional, default, catch_all)


_GUID = re.compile(r"[{(]?[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}[})]?")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _constraint_ok(constraint: str, value: str) -> bool:
    found = re.fullmatch(r"(\w+)(?:\((.*)\))?", constraint, re.DOTALL)
    if found is None:
        return True
    kind, arg = found.group(1).lower(), found.group(2)
    args = [a.strip() for a in arg.split(",")] if arg is not None and kind != "regex" else []
    if kind in ("int", "long"):
        return re.fullmatch(r"[+-]?\d+", value) is not None
    if kind in ("float", "double", "decimal"):
        return _number(value) is not None
    if kind == "bool":
        return value.lower() in ("true", "false")
    if kind == "alpha":
        return re.fullmatch(r"[A-Za-z]+", value) is not None
    if kind == "guid":
        return _GUID.fullmatch(value) is not None
    if kind == "datetime":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    if kind == "minlength" and args:
        return len(value) >= int(args[0])
    if kind == "maxlength" and args:
        return len(value) <= int(args[0])
    if kind == "length" and args:
        low, high = int(args[0]), int(args[-1])
        return low <= len(value) <= high
    if kind in ("min", "max", "range") and args:
        number = _number(value)
        if number is None:
            return False
        floor = float(args[0]) if kind in ("min", "range") else -math.inf
        ceiling = float(args[-1]) if kind in ("max", "range") else math.inf
        return floor <= number <= ceiling
    if kind == "regex" and arg is not None:
        return re.search(arg, value, re.IGNORECASE) is not None
    return True  # "required" and constraints this host does not know


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str

    @classmethod
    def from_spec(cls, spec: FunctionSpec) -> HttpRoute:
        trigger = spec.trigger
        methods = trigger.get("methods")
        return cls(
            spec=spec,
            template=compile_route(str(trigger.get("route") or spec.name)),
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "function").lower(),
        )


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default (5) drops bursts of connections for a second


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
        self._functions = {n.lower() for n in function_names} | {
            r.spec.name.lower() for r in self._routes
        }
        self._platform_auth = platform_auth
        self._tenant = tenant or (platform_auth.tenant if platform_auth else None)
        self._run_function = run_function
        self._invoker = invoker
        self._prefix = route_prefix.strip("/")
        handler = _make_handler(self._dispatch, body_size_limit(os.environ))
        self._server = _Server((host, port), handler)
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
    ) -> _Reply:
        split = urlsplit(target)
        path = split.path
        # App Service authentication runs before the Functions host: it owns /.auth/, drops any
        # client-sent principal headers, and turns a valid bearer token into its own.
        headers = strip_principal(headers)
        query = parse_qsl(split.query, keep_blank_values=True)
        params: dict[str, str] = {}
        for name, value in query:
            params[name] = f"{params[name]},{value}" if name in params else value
        key = _presented_key(headers, query)
        if self._tenant is not None and path.startswith("/.auth/"):
            return self._auth_route(method, path, key, read_body)
        if self._platform_auth is not None:
            authorization = headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                try:
                    headers = {**headers, **self._platform_auth.principal_headers(authorization)}
                except InvalidToken:
                    challenge = 'Bearer error="invalid_token"'
                    return _Reply(HTTPStatus.UNAUTHORIZED, [("WWW-Authenticate", challenge)])
        run = _run_target(path)
        if run is not None and method == "POST":
            return self._run_route(run, key)
        admin = _admin_target(path)
        if admin is not None:
            return self._admin_route(method, admin, key, headers, read_body)
        if self._prefix:
            prefix = self._prefix.lower().split("/")
            segments = path.strip("/").split("/")
            if [s.lower() for s in segments[: len(prefix)]] != prefix:
                return _Reply(HTTPStatus.NOT_FOUND)
            path = "/".join(segments[len(prefix) :])
        # The method is part of the match: a route that does not take it is no route (404).
        matches = [
            (r, v)
            for r in self._routes
            if (r.methods is None or method in r.methods)
            and (v := r.template.match(path)) is not None
        ]
        if not matches:
            return _Reply(HTTPStatus.NOT_FOUND)
        route, route_params = matches[0]
        if not self._keys.authorizes(route.auth_level, route.spec.name, key):
            return _Reply(HTTPStatus.UNAUTHORIZED)
        body = read_body()
        invocation_id = new_invocation_id()
        request = func.HttpRequest(
            method=method,
            url=f"http://{headers.get('host') or self.base_url.removeprefix('http://')}{target}",
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        started = time.monotonic()
        try:
            result = self._invoker.invoke(route.spec, request, invocation_id)
            reply = _to_reply(result)
        except Exception:
            log.exception(
                "function %s raised; answering 500 (invocation_id=%s)",
                route.spec.name,
                invocation_id,
            )
            reply = _Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
        log_invocation(
            route.spec,
            reply.status,
            time.monotonic() - started,
            invocation_id,
            method=method,
            route=route.template.template,
        )
        return reply

    def _auth_route(
        self, method: str, path: str, key: str | None, read_body: Callable[[], bytes]
    ) -> _Reply:
        """The local tenant's offline-only hooks (Entra has no such thing):

        - ``POST /.auth/devhost/token`` ``{"roles": [...], "kind": "application"|"user", "id",
          "version": "2.0"|"1.0"}``: a caller token of the local tenant. Guarded by a host key
          (or the master key), as anyone able to call every function could also mint a token;
          a function key, good for one function only, is not enough.
        - ``POST /.auth/devhost/rotate`` ``{"keepPrevious": true}``: the tenant signs with a new
          key from now on, and keeps the old one published or drops it. The master key only.
        """
        assert self._tenant is not None
        hook = path.rstrip("/")
        if hook not in ("/.auth/devhost/token", "/.auth/devhost/rotate"):
            return _Reply(HTTPStatus.NOT_FOUND)
        if method != "POST":
            return _Reply(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "POST")])
        found = self._keys.match(key)
        if found is None:
            return _Reply(HTTPStatus.UNAUTHORIZED)
        try:
            asked = json.loads(read_body() or b"{}")
            if hook.endswith("/rotate"):
                if found.scope != "master":
                    return _Reply(HTTPStatus.FORBIDDEN)
                keep = asked.get("keepPrevious", True)
                if not isinstance(keep, bool):
                    return _Reply(HTTPStatus.BAD_REQUEST)
                kid = self._tenant.rotate(keep_previous=keep)
                return _json_reply(HTTPStatus.OK, {"kid": kid, "keys": self._tenant.jwks()})
            version = str(asked.get("version", "2.0"))
            if version not in ("1.0", "2.0"):
                return _Reply(HTTPStatus.BAD_REQUEST)
            token = self._tenant.mint(
                [str(role) for role in asked.get("roles", [])],
                kind=str(asked.get("kind", "application")),
                subject_id=asked.get("id"),
                version=version,
            )
        except (ValueError, TypeError, AttributeError):
            return _Reply(HTTPStatus.BAD_REQUEST)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        return _Reply(200, [("Content-Type", "application/json")], json.dumps(answer).encode())

    def _admin_route(
        self,
        method: str,
        target: _AdminTarget,
        key: str | None,
        headers: Mapping[str, str],
        read_body: Callable[[], bytes],
    ) -> _Reply:
        """The runtime's key API (``KeysController``), for the master key only."""
        found = self._keys.match(key)
        if found is None:
            return _Reply(HTTPStatus.UNAUTHORIZED)
        if found.scope != "master":
            return _Reply(HTTPStatus.FORBIDDEN)
        allowed = ("GET", "POST", "PUT") if target.key_name is not None else ("GET",)
        if method not in allowed:
            return _Reply(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", ", ".join(allowed))])
        if target.function is not None and target.function.lower() not in self._functions:
            return _Reply(HTTPStatus.NOT_FOUND)
        base = f"http://{headers.get('host') or self.base_url.removeprefix('http://')}"
        link = {"links": [{"rel": "self", "href": base + target.path}]}
        if method == "GET":
            keys = self._admin_keys(target)
            if target.key_name is None:
                listed = [{"name": n, "value": v} for n, v in keys.items()]
                return _json_reply(HTTPStatus.OK, {"keys": listed, **link})
            value = keys.get(target.key_name)
            if value is None:
                return _Reply(HTTPStatus.NOT_FOUND)
            return _json_reply(HTTPStatus.OK, {"name": target.key_name, "value": value, **link})
        assert target.key_name is not None
        value_given: str | None = None
        if method == "PUT":
            try:
                body = json.loads(read_body() or b"null")
            except ValueError:
                body = None
            value_given = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value_given, str):
                return _text_reply(HTTPStatus.BAD_REQUEST, "Invalid key value")
        try:
            if target.function is None and target.key_name.lower() == MASTER_KEY_NAME:
                # As the host: the master key is set through either host scope, by its name.
                value, created = self._keys.set_master_key(value_given), value_given is None
            elif target.function is not None:
                value, created = self._keys.set_function_key(
                    target.function, target.key_name, value_given
                )
            elif target.scope == "systemkeys":
                return _Reply(HTTPStatus.NOT_FOUND)  # extensions own system keys; none here
            else:
                value, created = self._keys.set_host_key(target.key_name, value_given)
        except KeyRingError as error:
            return _text_reply(HTTPStatus.BAD_REQUEST, str(error))
        answer = {"name": target.key_name, "value": value, **link}
        if created:
            return _json_reply(HTTPStatus.CREATED, answer, [("Location", base + "/")])
        return _json_reply(HTTPStatus.OK, answer)

    def _run_route(self, name: str, key: str | None) -> _Reply:
        """``POST /admin/functions/{name}``: run a non-HTTP function now (master key only);
        202 at once, the function runs in the background, as in Azure."""
        found = self._keys.match(key)
        if found is None:
            return _Reply(HTTPStatus.UNAUTHORIZED)
        if found.scope != "master":
            return _Reply(HTTPStatus.FORBIDDEN)
        if self._run_function is None or not self._run_function(name):
            return _Reply(HTTPStatus.NOT_FOUND)
        return _Reply(HTTPStatus.ACCEPTED)

    def _admin_keys(self, target: _AdminTarget) -> dict[str, str]:
        if target.function is not None:
            return self._keys.function_keys(target.function)
        if target.scope == "systemkeys":
            # No extension keys offline; one key by name only, as the host: the master key.
            return {MASTER_KEY_NAME: self._keys.master_key} if target.key_name else {}
        return self._keys.host_keys()


@dataclass(frozen=True)
class _AdminTarget:
    """A path of the key API: host keys (``scope``) or a function's, and maybe one key."""

    path: str
    scope: str | None = None
    function: str | None = None
    key_name: str | None = None


_HOST_KEY_SCOPES = frozenset({"keys", "functionkeys", "systemkeys"})


def _run_target(path: str) -> str | None:
    """The function ``/admin/functions/{name}`` names (the admin API's manual run), or None."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    if len(segments) == 3 and [s.lower() for s in segments[:2]] == ["admin", "functions"]:
        return segments[2]
    return None


def _admin_target(path: str) -> _AdminTarget | None:
    """The key API route ``path`` names (matched case-insensitively, as ASP.NET routes), or
    None: any other path, ``/admin/...`` included, goes on to the function routes."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    lowered = [s.lower() for s in segments]
    host = lowered[:2] == ["admin", "host"] and len(segments) in (3, 4)
    if host and lowered[2] in _HOST_KEY_SCOPES:
        # `keys` is the same scope as `functionkeys` (the host keys).
        scope = "functionkeys" if lowered[2] == "keys" else lowered[2]
        name = segments[3] if len(segments) == 4 else None
        return _AdminTarget(path, scope=scope, key_name=name)
    if lowered[:2] == ["admin", "functions"] and len(segments) in (4, 5) and lowered[3] == "keys":
        name = segments[4] if len(segments) == 5 else None
        return _AdminTarget(path, function=segments[2], key_name=name)
    return None


def _json_reply(status: int, body: Any, headers: Sequence[tuple[str, str]] = ()) -> _Reply:
    content = [("Content-Type", "application/json; charset=utf-8"), *headers]
    return _Reply(status, content, json.dumps(body).encode())


def _text_reply(status: int, text: str) -> _Reply:
    return _Reply(status, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def _presented_key(headers: Mapping[str, str], query: Sequence[tuple[str, str]]) -> str | None:
    """The key the host checks: the header whenever it is sent, else the first ``code``."""
    if FUNCTION_KEY_HEADER in headers:
        return headers[FUNCTION_KEY_HEADER]
    return next((value for name, value in query if name == FUNCTION_KEY_QUERY), None)


def _to_reply(result: Any) -> _Reply:
    """Converts the function's return value as the worker's `http` output converter does."""
    if isinstance(result, str):
        return _Reply(200, [("Content-Type", "text/plain; charset=utf-8")], result.encode())
    if result is None:
        return _Reply(HTTPStatus.NO_CONTENT)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, not an HttpResponse")
    headers = [(str(k), str(v)) for k, v in result.headers.items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = str(result.mimetype)
        charset = str(result.charset)
        ct = f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype
        headers.append(("Content-Type", ct))
    return _Reply(int(result.status_code), headers, result.get_body() or b"")


_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def _make_handler(
    dispatch: Callable[[str, str, Mapping[str, str], Callable[[], bytes]], _Reply],
    max_body_bytes: int = MAX_BODY_BYTES,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # idle keep-alive connections give their thread back
        server_version = "devhost-functions"

        def parse_request(self) -> bool:
            """Kestrel's request line and header limits on top of the stdlib's parsing."""
            if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
                self.requestline = self.command = self.request_version = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return False
            if not super().parse_request():
                return False
            size = sum(len(name) + len(value) + 4 for name, value in self.headers.items())
            if size > MAX_REQUEST_HEADERS_BYTES:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            length = self.headers.get("content-length")
            if length is not None and not (length.isascii() and length.strip().isdigit()):
                self.send_error(HTTPStatus.BAD_REQUEST)
                return False
            return True

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """A refusal of the HTTP layer itself, the way Kestrel writes one: the status, an
            empty body, the connection closed (the stdlib would send an HTML page)."""
            self.close_connection = True
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def __getattr__(self, name: str) -> Any:
            # Kestrel takes any method token to routing (which answers 404 where none fits);
            # the stdlib would answer 501 for a method without a do_ handler.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def _handle(self) -> None:
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            body_read = False

            def read_body() -> bytes:
                nonlocal body_read
                body_read = True
                return self._read_body(headers)

            try:
                reply = dispatch(self.command.upper(), self.path, headers, read_body)
            except _BodyError as error:
                reply = _Reply(error.status)
                self.close_connection = True
            except Exception:
                log.exception("devhost HTTP dispatch failed; answering 500")
                reply = _Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
                self.close_connection = True
            may_have_body = headers.get("content-length", "0") != "0" or (
                "transfer-encoding" in headers
            )
            if not body_read and may_have_body:
                self.close_connection = True  # an unread body would be read as the next request
            self._write(reply)

        def _read_body(self, headers: Mapping[str, str]) -> bytes:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                chunks: list[bytes] = []
                total = 0
                while True:
                    size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                    try:
                        size = int(size_line, 16)
                    except ValueError:
                        raise _BodyError(HTTPStatus.BAD_REQUEST) from None
                    if size == 0:
                        while self.rfile.readline(1024).strip():
                            pass  # trailers
                        return b"".join(chunks)
                    total += size
                    if total > max_body_bytes:
                        raise _BodyError(_BODY_TOO_LARGE)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(1024)
            try:
                length = int(headers.get("content-length", "0") or "0")
            except ValueError:
                raise _BodyError(HTTPStatus.BAD_REQUEST) from None
            if length < 0:
                raise _BodyError(HTTPStatus.BAD_REQUEST)
            if length > max_body_bytes:
                raise _BodyError(_BODY_TOO_LARGE)
            return self.rfile.read(length) if length else b""

        def _write(self, reply: _Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                if self.command != "HEAD" and reply.body:
                    self.wfile.write(reply.body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the caller gave up; nothing left to tell it

        def log_message(self, format: str, *args: Any) -> None:
            """Silenced: the access log would print paths and query strings (keys in `code`)."""

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


#: What the Functions host answers for a body over its limit (azure-functions-host#10519).
_BODY_TOO_LARGE = HTTPStatus.INTERNAL_SERVER_ERROR


class _BodyError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def routes_for(specs: Iterable[FunctionSpec]) -> list[HttpRoute]:
    return [HttpRoute.from_spec(s) for s in specs if s.trigger_type == "httpTrigger"]


__all__ = ["HttpRoute", "HttpTriggerServer", "RouteTemplate", "compile_route", "routes_for"]
