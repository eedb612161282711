"""How Graph turns a request into an answer, before and after the call itself.

An unknown path is a 400 ``BadRequest`` (not a 404) and a wrong method a 405. Injected faults
act before the token is read, as a throttling or failing front end answers before Graph sees
the request; a connection dropped ``after processing`` loses an answer whose request did take
effect. Every answer carries a fresh ``request-id`` and echoes ``client-request-id``, which
is what support asks for, and each request is recorded and logged once, signatures redacted.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from .admin import PREFIX as ADMIN_PREFIX
from .faults import FaultInjector
from .redaction import log, redact
from .replies import GraphError, Reply, error_body, error_reply

_SUBMIT = re.compile(r"^/(beta|v1\.0)/users/([^/]+)/exportPersonalData$")
_POLL = re.compile(r"^/(beta|v1\.0)/dataPolicyOperations/([^/]+)$")
_USER = re.compile(r"^/(beta|v1\.0)/users/([^/]+)$")


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
class Endpoints:
    """The Graph calls, given the API version, the id in the path and the token's claims."""

    submit: Callable[[str, str, Mapping[str, Any], bytes], Reply]  # ..., request body
    poll: Callable[[str, str, Mapping[str, Any]], Reply]
    resolve: Callable[[str, str, str, Mapping[str, Any]], Reply]  # ..., query string, ...


class Router:
    """Routes, faults, the token check and the answer envelope around ``Endpoints``."""

    def __init__(
        self,
        *,
        endpoints: Endpoints,
        authenticate: Callable[[str | None], dict[str, Any]],
        injector: FaultInjector,
        admin: Callable[[str, str, bytes], Reply],
        clock: Callable[[], datetime],
    ) -> None:
        self._endpoints = endpoints
        self._authenticate = authenticate
        self._injector = injector
        self._admin = admin
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        request_id = str(uuid.uuid4())
        client_request_id = headers.get("client-request-id")
        parts = urlsplit(target)
        path = unquote(parts.path)
        try:
            if path.startswith(ADMIN_PREFIX):
                route, reply = "admin", self._admin(method, path, body)
            else:
                route, reply = self._graph(method, path, parts.query, headers, body)
        except Exception as error:  # noqa: BLE001 - a simulator bug must still answer
            log.warning("graph simulator error: %s", type(error).__name__)
            route, reply = "error", error_reply(500, "InternalServerError", "Simulator error.")
        if not reply.drop:
            if reply.body or reply.error:
                reply.headers.setdefault("Content-Type", "application/json")
            reply.headers["request-id"] = request_id
            if client_request_id:
                reply.headers["client-request-id"] = client_request_id
            if reply.error is not None:
                reply.body = error_body(reply.error, request_id, client_request_id, self._clock())
        status = 0 if reply.drop else reply.status  # 0: the connection was dropped
        record = RequestRecord(method, parts.path, route, status, request_id, client_request_id)
        with self._lock:
            self._requests.append(record)
        # Graph's own access log, not something a Graph client sees: DEBUG (``serve --verbose``).
        # The same records are served at /_sim/requests.
        log.debug(redact(f"{method} {parts.path} -> {status} request-id={request_id}"))
        return reply

    def _graph(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, Reply]:
        route, match = _route(path)
        if route == "unknown":
            return route, error_reply(
                400, "BadRequest", f"Resource not found for the segment '{path}'."
            )
        expected_method = "POST" if route == "submit" else "GET"
        if method != expected_method:
            return route, error_reply(405, "MethodNotAllowed", f"{method} is not allowed here.")
        assert match is not None
        injector = self._injector
        dropped = injector.take(route, "drop_next")
        if dropped and not injector.faults.drop_after_processing:
            return route, Reply(0, drop=True)
        if injector.take(route, "slow_next"):
            time.sleep(injector.faults.slow_seconds)
        version, name = match.group(1), match.group(2)
        try:
            injector.raise_injected(route)
            claims = self._authenticate(headers.get("authorization"))
            if route == "submit":
                reply = self._endpoints.submit(version, name, claims, body)
            elif route == "poll":
                reply = self._endpoints.poll(version, name, claims)
            else:
                reply = self._endpoints.resolve(version, name, query, claims)
        except GraphError as error:
            reply = Reply(error.status, headers=error.headers, error=(error.code, error.message))
        if dropped:
            return route, Reply(0, drop=True)
        return route, reply


def _route(path: str) -> tuple[str, re.Match[str] | None]:
    for name, pattern in (("submit", _SUBMIT), ("poll", _POLL), ("resolve", _USER)):
        match = pattern.match(path)
        if match:
            return name, match
    return "unknown", None
