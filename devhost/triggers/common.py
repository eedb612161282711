"""Reading a function's bindings and invoking it the way the Python worker does.

The host only ever sees what the real host sees: the raw binding JSON and the worker entry point
(`get_user_function()`). Parameter names therefore come from the bindings, never from guessing at
the function's signature, so a renamed `arg_name` breaks here exactly as it would in Azure.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions import _abc as func_abc
from azure.functions.decorators.function_app import Function

log = logging.getLogger("devhost.functions")

ClientBinding = Callable[[], dict[str, Any]]

#: Triggers that the durable engine runs, not this host.
DURABLE_TRIGGERS = frozenset({"orchestrationTrigger", "activityTrigger", "entityTrigger"})
SUPPORTED_TRIGGERS = frozenset({"httpTrigger", "queueTrigger", "timerTrigger"})


class UnsupportedFunctionError(ValueError):
    """A function uses a trigger or binding the offline host cannot serve.

    Raised when the host is built rather than at the first invocation, so that a new binding in
    `function_app.py` fails loudly in dev instead of silently never firing.
    """


@dataclass(frozen=True)
class FunctionSpec:
    """What the host needs to know about one function, read once from its raw bindings."""

    name: str
    trigger_type: str
    trigger: Mapping[str, Any]
    trigger_param: str
    client_param: str | None
    entry: Callable[..., Any]
    wants_context: bool

    @classmethod
    def from_function(cls, function: Function) -> FunctionSpec | None:
        """Returns None for functions the durable engine runs (orchestrators, activities)."""
        name = str(function.get_function_name())
        bindings: list[dict[str, Any]] = [json.loads(raw) for raw in function.get_raw_bindings()]
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise UnsupportedFunctionError(f"function {name!r} must have exactly one trigger")
        trigger = triggers[0]
        trigger_type = str(trigger["type"])
        if trigger_type in DURABLE_TRIGGERS:
            return None
        if trigger_type not in SUPPORTED_TRIGGERS:
            raise UnsupportedFunctionError(
                f"function {name!r} has a {trigger_type!r}, which the offline host does not serve"
            )
        client_param: str | None = None
        for binding in bindings:
            if binding is trigger:
                continue
            kind = binding.get("type")
            if kind == "durableClient":
                client_param = str(binding["name"])
            elif kind == "http" and binding.get("direction") == "OUT":
                continue
            else:
                raise UnsupportedFunctionError(
                    f"function {name!r} uses a {kind!r} binding, which the offline host does not "
                    "support yet"
                )
        entry = function.get_user_function()
        bound = {str(trigger["name"])} | ({client_param} if client_param else set())
        params = set(inspect.signature(entry).parameters)
        # The worker refuses to load such a function; say so now rather than at the first call.
        if params - bound - {"context"}:
            raise UnsupportedFunctionError(
                f"cannot load function {name!r}: parameters declared in Python but not in its "
                f"bindings: {sorted(params - bound - {'context'})}"
            )
        if bound - params:
            raise UnsupportedFunctionError(
                f"cannot load function {name!r}: bindings without a Python parameter: "
                f"{sorted(bound - params)}"
            )
        return cls(
            name=name,
            trigger_type=trigger_type,
            trigger=trigger,
            trigger_param=str(trigger["name"]),
            client_param=client_param,
            entry=entry,
            wants_context="context" in params and "context" not in bound,
        )


class _TraceContext(func_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RpcException(func_abc.RpcException):
    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _RetryContext(func_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> func_abc.RpcException:
        return _RpcException()


class _Context(func.Context):
    """The `context` argument the worker passes to functions that declare one."""

    _local = threading.local()

    def __init__(self, invocation_id: str, function_name: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._local  # type: ignore[return-value]  # the worker hands out an instance too

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return _RetryContext()


_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _worker_loop() -> asyncio.AbstractEventLoop:
    """One event loop for every async function in this process, as in the Python worker.

    The durable SDK keeps a module-global aiohttp session bound to the loop that created it, so
    running each invocation in a fresh loop (`asyncio.run`) breaks the second client call. The
    loop lives in a daemon thread for the life of the process and is shared by all hosts.
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="devhost-worker-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


class Invoker:
    """Calls function entry points with the keyword arguments the worker would pass."""

    def __init__(self, client_binding: ClientBinding | None) -> None:
        self._client_binding = client_binding

    def check(self, spec: FunctionSpec) -> None:
        if spec.client_param and self._client_binding is None:
            raise UnsupportedFunctionError(
                f"function {spec.name!r} has a durableClient binding but the host was given no "
                "client_binding"
            )

    def invoke(self, spec: FunctionSpec, trigger_value: object, invocation_id: str) -> Any:
        kwargs: dict[str, Any] = {spec.trigger_param: trigger_value}
        if spec.client_param:
            assert self._client_binding is not None  # checked when the host was built
            kwargs[spec.client_param] = json.dumps(self._client_binding())
        if spec.wants_context:
            kwargs["context"] = _Context(invocation_id, spec.name)
        result = spec.entry(**kwargs)
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(_await(result), _worker_loop()).result()
        return result


async def _await(awaitable: Any) -> Any:
    _adopt_sdk_session()
    return await awaitable


def _sdk_http_utils() -> Any:
    try:
        from azure.durable_functions.models.utils import http_utils
    except ImportError:  # pragma: no cover - the durable SDK is a runtime dependency
        return None
    return http_utils


def _adopt_sdk_session() -> None:
    """Drops a durable-SDK session (and lock) left bound to another event loop.

    The SDK keeps one aiohttp session and one asyncio lock per process and assumes the worker's
    single loop. Code elsewhere in the process (tests, the durable engine) may have used the
    client under `asyncio.run`, leaving them tied to a loop that is closed or not ours; they
    cannot be closed from here, only forgotten.
    """
    utils = _sdk_http_utils()
    loop = asyncio.get_running_loop()
    session = getattr(utils, "_client_session", None)
    if session is not None and getattr(session, "_loop", loop) is not loop:
        utils._client_session = None
    lock = getattr(utils, "_session_lock", None)
    if lock is not None and getattr(lock, "_loop", None) not in (None, loop) and not lock.locked():
        utils._session_lock = asyncio.Lock()


async def _release_sdk_session() -> None:
    utils = _sdk_http_utils()
    loop = asyncio.get_running_loop()
    session = getattr(utils, "_client_session", None)
    if session is not None and getattr(session, "_loop", None) is loop:
        utils._client_session = None
        await session.close()
    lock = getattr(utils, "_session_lock", None)
    if lock is not None and getattr(lock, "_loop", None) is loop and not lock.locked():
        utils._session_lock = asyncio.Lock()


_users = 0


def acquire_worker_loop() -> None:
    """Counts running hosts, so the last one to stop can clean up after the shared loop."""
    global _users
    with _loop_lock:
        _users += 1


def release_worker_loop() -> None:
    """Closes the durable SDK's session when no host uses the loop any more.

    Otherwise a later `asyncio.run(...)` elsewhere in the process would pick up a session bound
    to this loop and fail ("Timeout context manager should be used inside a task").
    """
    global _users
    with _loop_lock:
        _users = max(0, _users - 1)
        if _users or _loop is None or _loop.is_closed():
            return
        loop = _loop
    try:
        asyncio.run_coroutine_threadsafe(_release_sdk_session(), loop).result(timeout=10)
    except Exception:  # cleanup must not mask the reason the host stopped
        log.warning("could not close the durable SDK HTTP session", exc_info=True)


def new_invocation_id() -> str:
    return str(uuid.uuid4())


def log_invocation(
    spec: FunctionSpec, status: str | int, duration_s: float, invocation_id: str, **extra: object
) -> None:
    """One line per invocation: enough to follow a flow, nothing from the payload.

    Request bodies, headers and queue message bodies may carry personal data or keys, so only
    their shape (route template, method, dequeue count) is logged.
    """
    fields: dict[str, object] = {
        "function": spec.name,
        "trigger": spec.trigger_type,
        "status": status,
        "duration_ms": round(duration_s * 1000, 1),
        "invocation_id": invocation_id,
        **extra,
    }
    log.info(
        "invocation %s",
        " ".join(f"{key}={value}" for key, value in fields.items()),
        extra={"devhost": fields},
    )


def resolve_app_setting(value: str) -> str:
    """Resolves `%Name%` binding expressions from the environment, as the host does.

    Used for queue names and timer schedules, which the app may keep in app settings.
    """
    found = re.fullmatch(r"%([^%]+)%", value.strip())
    if found is None:
        return value
    name = found.group(1)
    if name not in os.environ:
        raise UnsupportedFunctionError(f"app setting {name!r} (from {value!r}) is not set")
    return os.environ[name]


def timespan_seconds(value: object, *, what: str) -> float:
    """host.json durations: a .NET TimeSpan string (`[d.]hh:mm:ss[.fff]`) or milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"host.json {what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000
    if isinstance(value, str):
        found = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", value.strip())
        if found:
            days, hours, minutes, seconds = found.groups()
            return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    raise ValueError(f"host.json {what}: expected a duration like '00:00:30', got {value!r}")
