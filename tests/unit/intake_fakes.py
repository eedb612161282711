"""Test doubles for the intake tests: a durable client, a rejection sink, request builders.

``FakeDurableClient`` stands in for the task hub behind the client binding: it keeps instances in
a dict and implements the app's adapter interface (:class:`dsr_export.adapters.durable_client.
TaskHub`, with its errors), so the intake code under test is the production code, unmodified.
The adapter's mapping of the SDK's own failures is tested against the SDK's texts in
tests/unit/test_durable_client.py and against the offline host's extension in tests/devhost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from dsr_export import settings
from dsr_export.adapters.durable_client import InstanceGone, InstanceUnknown
from dsr_export.adapters.task_hub import Page
from dsr_export.domain import evidence
from dsr_export.domain.request import canonical_request_id
from intake.service import LIVE_STATES

SECRET_KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
ALLOWED = "tickets.example.com,*.service-now.com"
USER_ID = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
OTHER_ID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_LIVE = LIVE_STATES


class FakeDurableClient:
    """The task hub as the intake sees it (:class:`TaskHub`)."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.started: list[tuple[str, str, Any]] = []
        self.events: list[tuple[str, str, Any]] = []
        self.purged: list[str] = []
        self.terminated: list[tuple[str, str]] = []
        self.get_status_calls = 0
        self.queries: list[tuple[datetime, datetime, tuple[str, ...]]] = []
        self.pages_read = 0
        self.statuses_read = 0
        #: Set to make the next start_new lose a race to a concurrent duplicate.
        self.race_with: dict[str, Any] | None = None
        self.fail_with: Exception | None = None
        #: Durable entities' states by (name, key), as their functions last set them.
        self.entities: dict[tuple[str, str], Any] = {}

    def add(
        self,
        instance_id: str,
        *,
        runtime: str = "Running",
        custom_status: Any = None,
        output: Any = None,
        input_: Any = None,
        created: datetime = T0,
        name: str = "export_personal_data",
    ) -> None:
        self.instances[instance_id] = {
            "name": name,
            "runtime": runtime,
            "custom": custom_status,
            "output": output,
            "input": input_ if input_ is not None else {"requestId": instance_id, "user": USER_ID},
            "created": created,
        }

    def _status(self, instance_id: str, show_input: bool) -> DurableOrchestrationStatus:
        found = self.instances[instance_id]
        return DurableOrchestrationStatus(
            name=found["name"],
            instanceId=instance_id,
            createdTime=found["created"].isoformat(),
            lastUpdatedTime=found["created"].isoformat(),
            input=json.dumps(found["input"]) if show_input else None,
            output=found["output"],
            runtimeStatus=found["runtime"],
            customStatus=found["custom"],
        )

    async def status(
        self, instance_id: str, *, show_input: bool = False
    ) -> DurableOrchestrationStatus | None:
        self.get_status_calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        if instance_id not in self.instances:
            return None
        return self._status(instance_id, show_input)

    async def start(self, name: str, instance_id: str, payload: Any) -> bool:
        if self.race_with is not None:
            self.add(instance_id, runtime="Pending", input_=self.race_with)
            self.race_with = None
        found = self.instances.get(instance_id)
        if found is not None and found["runtime"] in _LIVE:
            return False
        self.started.append((name, instance_id, payload))
        self.add(instance_id, runtime="Pending", input_=payload, name=name)
        return True

    async def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        found = self.instances.get(instance_id)
        if found is None:
            raise InstanceUnknown(instance_id)
        if found["runtime"] not in _LIVE:
            raise InstanceGone(instance_id)
        self.events.append((instance_id, name, data))

    async def terminate(self, instance_id: str, reason: str) -> None:
        self.terminated.append((instance_id, reason))
        self.instances[instance_id]["runtime"] = "Terminated"

    async def entity_state(self, name: str, key: str) -> Any:
        return self.entities.get((name, key))

    async def purge(self, instance_id: str) -> int:
        self.purged.append(instance_id)
        return 1 if self.instances.pop(instance_id, None) is not None else 0

    async def query_pages(
        self,
        *,
        created_from: datetime,
        created_to: datetime,
        runtime_status: Any = (),
        page_size: int = 100,
    ) -> AsyncGenerator[Page, None]:
        """The extension's instance query, with its filters, a page at a time, in instance id
        order (as the Azure Storage backend answers: not the list's created-time order)."""
        self.queries.append((created_from, created_to, tuple(runtime_status)))
        wanted = set(runtime_status)
        rows = [
            self._status(i, False)
            for i, found in sorted(self.instances.items())
            if (not wanted or found["runtime"] in wanted)
            and created_from <= found["created"] <= created_to
        ]
        for start in range(0, max(len(rows), 1), page_size):
            self.pages_read += 1
            self.statuses_read += len(rows[start : start + page_size])
            yield Page(rows[start : start + page_size], more=start + page_size < len(rows))


class QueueTrimmings:
    """The retention run's queue trimmer: records each call, answers ``cleared`` (or fails)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self.cleared: dict[str, int] = {}
        self.fail: set[str] = set()

    def __call__(self, queue: str, cutoff: datetime) -> int:
        self.calls.append((queue, cutoff))
        if queue in self.fail:
            raise ConnectionError("host storage unreachable")
        return self.cleared.get(queue, 0)


class ListSink:
    """A rejection sink that keeps records in memory (or fails, to test the retry path)."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.fail = False

    def record(self, rejection: Mapping[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("storage unreachable")
        self.records.append(dict(rejection))


#: The function key a request carries (the host validated it before the function runs).
FUNCTION_KEY = "unit-test-function-key"
#: Every role for function-key callers: the tests of the routes' own behaviour.
ALL_ROLES = "DSR.Submit,DSR.Read,DSR.Manage"


def request(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    content_type: str | None = "application/json",
    route_params: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    key: str | None = FUNCTION_KEY,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A request as the host hands it over: a function key (the host checked it) by default."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    headers = dict(headers or {})
    if content_type:
        headers["content-type"] = content_type
    if key is not None:
        headers["x-functions-key"] = key
    return func.HttpRequest(
        method=method,
        url=f"http://localhost/api/{url}",
        headers=headers,
        params=params or {},
        route_params=route_params or {},
        body=raw,
    )


def call(entry: Any, client: FakeDurableClient, **kwargs: Any) -> Any:
    """Run a client function's own coroutine (``entry`` is the function's user function, from
    the ``user_function`` fixture) with the fake in place of the binding's client."""
    return asyncio.run(entry.client_function(client=client, **kwargs))


def body(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


@contextmanager
def app_settings(**values: str) -> Iterator[None]:
    """Set app settings and reset the process-wide settings caches around a block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    _clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear()


def _clear() -> None:
    settings.clear_cache()


def intake_settings(**extra: str) -> AbstractContextManager[None]:
    """The intake tests' settings: callbacks on, every role for function-key callers."""
    return app_settings(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_ALLOWED_HOSTS=ALLOWED,
        AUTH_FUNCTION_KEY_ROLES=ALL_ROLES,
        **extra,
    )


def valid_payload(request_id: str = "RITM0001", **extra: Any) -> dict[str, Any]:
    return {"requestId": request_id, "user": USER_ID, **extra}


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


class MemoryEvidence:
    """The evidence log in memory: the domain's own chaining, no storage."""

    def __init__(self) -> None:
        self.records: dict[str, list[evidence.EvidenceRecord]] = {}

    def write(self, request_id: str, entry: Any, at: datetime) -> evidence.EvidenceRecord:
        return self.append(request_id, entry.KIND, at, entry.data())

    def append(
        self, request_id: str, kind: Any, at: datetime, data: Mapping[str, object]
    ) -> evidence.EvidenceRecord:
        chain = self.records.setdefault(canonical_request_id(request_id), [])
        event_id = data.get(evidence.EVENT_ID)
        if isinstance(event_id, str):
            earlier = evidence.find_event(chain, event_id)
            if earlier is not None:
                return earlier
        record = evidence.chain(chain[-1] if chain else None, kind, at, request_id, data)
        chain.append(record)
        return record

    def read(self, request_id: str) -> list[str]:
        chain = self.records.get(canonical_request_id(request_id), [])
        return [record.to_line().decode() for record in chain]
