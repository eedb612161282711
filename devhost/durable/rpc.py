"""The Durable extension's HTTP API, served on loopback for the SDK's unmodified client.

``DurableOrchestrationClient`` talks to the extension over HTTP at the binding's
``rpcBaseUrl``; serving the same routes, status codes and payloads here lets client functions
run exactly as in Azure. Shapes follow what the SDK parses, including the extension's quirks
(inputs and event data arrive JSON-encoded twice; status history is under ``historyEvents``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.durable_functions.models.utils import http_utils

from devhost._service import Service
from testsupport.durable_protocol import Ev, parse_ts, ts

from .engine import DurableEngine
from .store import TERMINAL, Instance, InstanceExistsError, Query

log = logging.getLogger("devhost.durable.rpc")

PREFIX = "/runtime/webhooks/durabletask/"
_DEFAULT_PAGE = 100
_TOKEN_HEADER = "x-ms-continuation-token"  # noqa: S105 - a header name


class RpcServer(Service):
    """Serves one engine's instances at ``rpc_base_url`` on 127.0.0.1."""

    def __init__(self, engine: DurableEngine, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        self._httpd = _Server((host, port), _Handler)
        self._httpd.engine = engine
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/runtime/webhooks/durabletask"

    @property
    def rpc_base_url(self) -> str:
        return self.base_url + "/"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="df-rpc", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def client_binding(self) -> dict[str, Any]:
        """The ``durableClient`` binding data a host json-encodes into the client argument.

        Management URLs carry no key: nothing here is a secret.
        """
        base, hub = self.base_url, self.engine.task_hub
        mgmt = f"{base}/instances/INSTANCEID"
        query = f"taskHub={hub}&connection=Storage"
        return {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}"
                f"[/{{instanceId}}]?{query}",
                "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}"
                f"[/{{instanceId}}]?timeout={{timeoutInSeconds}}"
                f"&pollingInterval={{intervalInSeconds}}&{query}",
            },
            "managementUrls": _management_urls(mgmt, "INSTANCEID", query),
            "baseUrl": base,
            "requiredQueryStringParameters": query,
            "rpcBaseUrl": self.rpc_base_url,
        }


async def close_sdk_client_session() -> None:
    """Close the SDK client's process-wide aiohttp session; await it before a loop ends.

    ``DurableOrchestrationClient`` keeps one session bound to the event loop that created it;
    the next client call on another loop (a new ``asyncio.run``) fails with "Event loop is
    closed". The Python worker runs one long-lived loop, so a host should too, or call this.
    """
    await http_utils._close_session()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    engine: DurableEngine


def _management_urls(instance_url: str, instance_id: str, query: str) -> dict[str, str]:
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{instance_url}?{query}",
        "sendEventPostUri": f"{instance_url}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance_url}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{instance_url}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{instance_url}?{query}",
        "restartPostUri": f"{instance_url}/restart?{query}",
        "suspendPostUri": f"{instance_url}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance_url}/resume?reason={{text}}&{query}",
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("rpc " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if not url.path.startswith(PREFIX):
            self._reply(HTTPStatus.NOT_FOUND, None)
            return
        parts = [unquote(s) for s in url.path[len(PREFIX) :].split("/") if s]
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(method, parts, params, body)
        except ValueError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, _error("Invalid request", exc))
        except Exception as exc:
            log.exception("durable rpc %s %s failed", method, url.path)
            self._reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                _error("Something went wrong while processing your request", exc),
            )

    def _route(self, method: str, parts: list[str], params: dict[str, str], body: str) -> None:
        engine = self.server.engine
        match method, parts:
            case "POST", ["orchestrators", name, *rest] if len(rest) <= 1:
                self._start(name, rest[0] if rest else None, body)
            case "GET", ["instances"]:
                self._list(params)
            case "GET", ["instances", instance_id]:
                self._instance(instance_id, params)
            case "POST", ["instances", instance_id, "raiseEvent", event_name]:
                media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if media_type.lower() != "application/json":
                    self._reply(HTTPStatus.BAD_REQUEST, "Only application/json is supported")
                    return
                data = json.dumps(json.loads(body)) if body else "null"
                self._reply_op(engine.raise_event(instance_id, event_name, data))
            case "POST", ["instances", instance_id, ("terminate" | "suspend" | "resume") as op]:
                reason = params.get("reason", "")
                self._reply_op(getattr(engine, op)(instance_id, reason))
            case "GET", ["entities", name, key]:
                self._entity(name, key)
            case "DELETE", ["instances", instance_id]:
                if engine.get_status(instance_id) is None:
                    self._reply(HTTPStatus.NOT_FOUND, None)
                    return
                self._reply(HTTPStatus.OK, {"instancesDeleted": engine.purge([instance_id])})
            case "DELETE", ["instances"]:
                if not params.get("createdTimeFrom"):
                    self._reply(
                        HTTPStatus.BAD_REQUEST,
                        "Please provide value for 'createdTimeFrom' parameter.",
                    )
                    return
                found = engine.query(_query(params))
                deleted = engine.purge([i.instance_id for i in found])
                code = HTTPStatus.OK if deleted else HTTPStatus.NOT_FOUND
                self._reply(code, {"instancesDeleted": deleted} if deleted else None)
            case _:
                self._reply(HTTPStatus.NOT_FOUND, None)

    def _instance(self, instance_id: str, params: dict[str, str]) -> None:
        inst = self.server.engine.get_status(instance_id)
        if inst is None:
            self._reply(HTTPStatus.NOT_FOUND, None)
            return
        code = HTTPStatus.OK if inst.status in TERMINAL else HTTPStatus.ACCEPTED
        self._reply(code, self._status_json(inst, params))

    def _entity(self, name: str, key: str) -> None:
        """The extension's entity-state read (``client.read_entity_state``): 404 when the
        entity does not exist."""
        state = self.server.engine.entity_state(name, key)
        if state is None:
            self._reply(HTTPStatus.NOT_FOUND, None)
            return
        self._reply(HTTPStatus.OK, state)

    def _start(self, name: str, instance_id: str | None, body: str) -> None:
        engine = self.server.engine
        input_json = json.dumps(json.loads(body)) if body.strip() else None
        try:
            new_id = engine.start_new(name, instance_id, input_json)
        except ValueError as exc:  # unknown orchestrator, invalid instance id
            self._reply(
                HTTPStatus.BAD_REQUEST,
                _error("One or more of the arguments submitted is incorrect", exc),
            )
            return
        except InstanceExistsError as exc:
            self._reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                _error("Something went wrong while processing your request", exc),
            )
            return
        base = f"http://{self.headers.get('Host')}{PREFIX}instances/{new_id}"
        payload: dict[str, Any] = {"id": new_id}
        payload |= {
            k: v
            for k, v in _management_urls(base, new_id, f"taskHub={engine.task_hub}").items()
            if k != "id"
        }
        self._reply(HTTPStatus.ACCEPTED, payload, {"Location": payload["statusQueryGetUri"]})

    def _list(self, params: dict[str, str]) -> None:
        top = int(params.get("top") or _DEFAULT_PAGE)
        offset = _decode_token(self.headers.get(_TOKEN_HEADER))
        # One row more than the page: whether a next page exists, without reading them all.
        found = self.server.engine.query(_query(params), limit=top + 1, offset=offset)
        page = found[:top]
        headers = {}
        if len(found) > top:
            headers[_TOKEN_HEADER] = base64.urlsafe_b64encode(str(offset + top).encode()).decode()
        self._reply(HTTPStatus.OK, [self._status_json(i, params) for i in page], headers)

    def _status_json(self, inst: Instance, params: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": inst.name,
            "instanceId": inst.instance_id,
            "runtimeStatus": inst.status,
            "customStatus": _loads(inst.custom_status),
            "output": _loads(inst.output),
            "createdTime": _status_ts(inst.created_time),
            "lastUpdatedTime": _status_ts(inst.last_updated_time),
        }
        show_input = _flag(params, "showInput", default=True)
        out["input"] = _loads(inst.input) if show_input else None
        if _flag(params, "showHistory", default=False):
            history = self.server.engine.get_history(inst.instance_id)
            out["historyEvents"] = _public_history(
                history,
                with_output=_flag(params, "showHistoryOutput", default=False),
                with_input=show_input,
            )
        return out

    def _reply_op(self, status: str | None) -> None:
        if status is None:
            self._reply(HTTPStatus.NOT_FOUND, None)
        elif status in TERMINAL:
            self._reply(HTTPStatus.GONE, None)
        else:
            self._reply(HTTPStatus.ACCEPTED, None)

    def _reply(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, exc: Exception) -> dict[str, Any]:
    """The ASP.NET error body the extension returns; the SDK surfaces it as is."""
    return {
        "Message": message,
        "ExceptionMessage": str(exc),
        "ExceptionType": type(exc).__name__,
        "StackTrace": None,
    }


def _flag(params: dict[str, str], name: str, *, default: bool) -> bool:
    value = params.get(name)
    return default if value is None else value.lower() == "true"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _status_ts(text: str) -> str:
    return parse_ts(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sdk_ts(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return ts(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _query(params: dict[str, str]) -> Query:
    statuses = frozenset(s for s in params.get("runtimeStatus", "").split(",") if s)
    return Query(
        statuses=statuses,
        created_from=_sdk_ts(params.get("createdTimeFrom")),
        created_to=_sdk_ts(params.get("createdTimeTo")),
        prefix=params.get("instanceIdPrefix") or None,
    )


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(int(base64.urlsafe_b64decode(token.encode()).decode()), 0)
    except ValueError:
        raise ValueError("invalid continuation token") from None


_EVENT_NAMES = {
    0: "ExecutionStarted",
    1: "ExecutionCompleted",
    2: "ExecutionFailed",
    3: "ExecutionTerminated",
    4: "TaskScheduled",
    5: "TaskCompleted",
    6: "TaskFailed",
    10: "TimerCreated",
    11: "TimerFired",
    12: "OrchestratorStarted",
    13: "OrchestratorCompleted",
    15: "EventRaised",
}


def _public_history(
    history: list[dict[str, Any]], *, with_output: bool, with_input: bool
) -> list[dict[str, Any]]:
    """The history as the extension's status API condenses it.

    Episode markers and TaskScheduled go; completions carry the activity's name and schedule
    time; results and inputs only when asked for.
    """
    scheduled = {e["EventId"]: e for e in history if e["EventType"] == Ev.TASK_SCHEDULED}
    out: list[dict[str, Any]] = []
    for e in history:
        kind = e["EventType"]
        if kind in (Ev.ORCHESTRATOR_STARTED, Ev.ORCHESTRATOR_COMPLETED, Ev.TASK_SCHEDULED):
            continue
        item = {k: v for k, v in e.items() if k not in ("EventId", "IsPlayed")}
        item["EventType"] = _EVENT_NAMES.get(kind, str(kind))
        if kind in (Ev.TASK_COMPLETED, Ev.TASK_FAILED):
            origin = scheduled.get(item.pop("TaskScheduledId", None), {})
            item["ScheduledTime"] = origin.get("Timestamp")
            item["FunctionName"] = origin.get("Name")
        elif kind == Ev.EXECUTION_STARTED:
            item["FunctionName"] = item.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                item.pop(key, None)
        elif kind == Ev.TIMER_FIRED:
            item.pop("TimerId", None)
        if kind in (Ev.TASK_COMPLETED, Ev.EXECUTION_COMPLETED):
            result = item.pop("Result", None)
            if with_output and result is not None:
                item["Result"] = _loads(result)
        if not with_input:
            item.pop("Input", None)
        elif isinstance(item.get("Input"), str):
            item["Input"] = _loads(item["Input"])
        out.append(item)
    return out
