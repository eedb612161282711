"""The app's instance listing against the offline host's copy of the extension's HTTP API.

The extension answers the instance query 100 rows at a time with ``x-ms-continuation-token``;
the SDK's own ``get_status_all`` stops after the first page. More instances than one page are
started here, and the app's adapter must find every one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.durable import DurableEngine, FastClock, RpcServer, close_sdk_client_session
from dsr_export.adapters.task_hub import PAGE_SIZE, list_instances, query_pages
from tests.devhost import toy_app

FUNCTIONS = toy_app.make_app(1).get_functions()
COUNT = PAGE_SIZE * 2 + 37


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DurableEngine, RpcServer]]:
    clock = FastClock(speed=1.0)
    engine = DurableEngine(FUNCTIONS, str(tmp_path_factory.mktemp("hub") / "d.db"), clock=clock)
    with engine, RpcServer(engine) as rpc:
        for n in range(COUNT):
            # Waiting for an event that never comes: live instances, as DSRs mostly are.
            engine.start_new("event_orch", f"dsr-{n:04d}", None)
        for n in range(COUNT):
            engine.wait_for(f"dsr-{n:04d}", {"Running"})
        engine.start_new("seq_orch", "done-1", json.dumps(json.dumps({"names": []})))
        engine.wait_for("done-1")
        yield engine, rpc


def _list(rpc: RpcServer, **query: Any) -> list[Any]:
    async def scenario() -> list[Any]:
        try:
            client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
            return await list_instances(client, **query)
        finally:
            await close_sdk_client_session()

    return asyncio.run(scenario())


def _window(engine: DurableEngine) -> dict[str, Any]:
    now = engine.clock.now()
    return {"created_from": now - timedelta(days=1), "created_to": now + timedelta(minutes=1)}


def test_every_instance_is_listed_across_pages(hub: tuple[DurableEngine, RpcServer]):
    engine, rpc = hub
    found = _list(rpc, **_window(engine))
    names = sorted(status.instance_id for status in found)
    assert len(names) == COUNT + 1 > PAGE_SIZE
    assert names[:3] == ["done-1", "dsr-0000", "dsr-0001"]


def test_the_query_is_bounded_by_runtime_status_and_created_time(
    hub: tuple[DurableEngine, RpcServer],
):
    engine, rpc = hub
    running = _list(rpc, runtime_status=["Running", "Pending"], **_window(engine))
    assert len(running) == COUNT
    completed = _list(rpc, runtime_status=["Completed"], **_window(engine))
    assert [status.instance_id for status in completed] == ["done-1"]
    later = engine.clock.now() + timedelta(hours=1)
    assert _list(rpc, created_from=later, created_to=later + timedelta(hours=1)) == []


def test_the_sdk_alone_stops_after_one_page(hub: tuple[DurableEngine, RpcServer]):
    """Why the adapter exists: if this starts failing, the SDK pages now; drop the adapter."""
    _, rpc = hub

    async def scenario() -> int:
        try:
            client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
            return len(await client.get_status_all())
        finally:
            await close_sdk_client_session()

    assert asyncio.run(scenario()) == PAGE_SIZE


def test_a_reader_that_stops_reads_no_further_page(hub: tuple[DurableEngine, RpcServer]):
    """F-13: pages are read one at a time, on demand, each saying whether another follows."""
    engine, rpc = hub

    async def scenario() -> list[tuple[int, bool]]:
        try:
            client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
            seen = []
            async for page in query_pages(client, page_size=50, **_window(engine)):
                seen.append((len(page.statuses), page.more))
                if len(seen) == 2:
                    break
            return seen
        finally:
            await close_sdk_client_session()

    assert asyncio.run(scenario()) == [(50, True), (50, True)]


def test_the_query_is_bounded_by_instance_id_prefix(hub: tuple[DurableEngine, RpcServer]):
    """The extension's ``instanceIdPrefix``: how the DSRs of one tenant (``{tenant key}:``)
    are counted without reading the others' (``intake.tenant_dsrs``)."""
    engine, rpc = hub

    async def scenario() -> list[str]:
        try:
            client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
            found: list[str] = []
            pages = query_pages(client, instance_id_prefix="dsr-01", **_window(engine))
            async for page in pages:
                found += [str(status.instance_id) for status in page.statuses]
            return found
        finally:
            await close_sdk_client_session()

    found = asyncio.run(scenario())
    assert sorted(found) == [f"dsr-{n:04d}" for n in range(100, 200)]
