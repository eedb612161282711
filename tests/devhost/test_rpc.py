"""The SDK's unmodified DurableOrchestrationClient works against the devhost's HTTP API."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devhost.durable import DurableEngine, FastClock, RpcServer, close_sdk_client_session
from tests.devhost import toy_app

FUNCTIONS = toy_app.make_app(1).get_functions()
ADMIN = next(f for f in FUNCTIONS if f.get_function_name() == "admin").get_user_function()


@pytest.fixture
def host(tmp_path: Any) -> Iterator[tuple[DurableEngine, RpcServer]]:
    engine = DurableEngine(FUNCTIONS, str(tmp_path / "d.db"), clock=FastClock(speed=1.0))
    with engine, RpcServer(engine) as rpc:
        yield engine, rpc


def run(coro: Any) -> Any:
    """One event loop per test: the SDK caches an aiohttp session bound to its loop."""

    async def wrapper() -> Any:
        try:
            return await coro
        finally:
            await close_sdk_client_session()

    return asyncio.run(wrapper())


async def call(rpc: RpcServer, op: str, **args: Any) -> Any:
    req = func.HttpRequest(
        method="POST",
        url=f"http://localhost:7071/api/admin/{op}",
        route_params={"op": op},
        body=json.dumps(args).encode(),
    )
    resp = await ADMIN(req=req, client=json.dumps(rpc.client_binding()))
    assert resp.status_code == 200
    return json.loads(resp.get_body())


def test_client_binding_has_no_secrets(host: tuple[DurableEngine, RpcServer]) -> None:
    _, rpc = host
    binding = rpc.client_binding()

    assert binding["rpcBaseUrl"].startswith("http://127.0.0.1:")
    assert binding["rpcBaseUrl"].endswith("/runtime/webhooks/durabletask/")
    assert "code=" not in json.dumps(binding)


def test_start_status_history_and_already_exists(host: tuple[DurableEngine, RpcServer]) -> None:
    engine, rpc = host

    async def scenario() -> None:
        assert await call(rpc, "start", name="seq_orch", id="r1", input={"names": ["x"]}) == "r1"
        engine.wait_for("r1")
        status = await call(rpc, "status", id="r1", history=True)
        assert status["runtimeStatus"] == "Completed"
        assert status["output"] == ["hello x"]
        # as in Azure: the SDK client JSON-encodes the input, the extension keeps it a string
        assert json.loads(status["input"]) == {"names": ["x"]}
        events = status["historyEvents"]
        assert [e["EventType"] for e in events] == [
            "ExecutionStarted",
            "TaskCompleted",
            "ExecutionCompleted",
        ]
        assert events[1]["FunctionName"] == "greet"
        assert "Result" not in events[1]  # only with showHistoryOutput

        await call(rpc, "start", name="event_orch", id="r2")
        with pytest.raises(Exception, match="already exists"):
            await call(rpc, "start", name="event_orch", id="r2")
        with pytest.raises(Exception, match="doesn't exist"):
            await call(rpc, "start", name="no_such_orch")
        with pytest.raises(Exception, match="must not start with @"):
            await call(rpc, "start", name="seq_orch", id="@entity")
        assert await call(rpc, "status", id="missing") is None

    run(scenario())


def test_raise_event_terminate_list_and_purge(host: tuple[DurableEngine, RpcServer]) -> None:
    engine, rpc = host

    async def scenario() -> None:
        await call(rpc, "start", name="event_orch", id="ev")
        await call(rpc, "raise", id="ev", event="approval", data={"ok": 1})
        inst = engine.wait_for("ev")
        # the extension's double encoding of event data reaches the orchestrator as a string
        assert json.loads(inst.output or "") == {"approved": '{"ok": 1}'}

        await call(rpc, "start", name="event_orch", id="term")
        await call(rpc, "terminate", id="term", reason="stop now")
        engine.wait_for("term")
        status = await call(rpc, "status", id="term")
        assert status["runtimeStatus"] == "Terminated"
        assert status["output"] == "stop now"
        await call(rpc, "terminate", id="term", reason="again")  # 410: accepted by the SDK
        with pytest.raises(Exception, match="is gone"):
            await call(rpc, "raise", id="term", event="approval")
        with pytest.raises(Exception, match="No instance"):
            await call(rpc, "raise", id="nobody", event="approval")

        await call(rpc, "start", name="event_orch", id="live")
        engine.wait_for("live", {"Running"})
        assert await call(rpc, "list", statuses=["Completed"]) == ["ev"]
        assert await call(rpc, "list") == ["ev", "live", "term"]

        assert await call(rpc, "purge", id="live") == 0  # still running: kept
        assert await call(rpc, "purge", id="ev") == 1
        assert await call(rpc, "purge", id="ev") == 0
        assert await call(rpc, "status", id="ev") is None
        assert await call(rpc, "start", name="seq_orch", id="term", input={"names": []}) == "term"

    run(scenario())


def test_instance_listing_pages_with_continuation_token(
    host: tuple[DurableEngine, RpcServer],
) -> None:
    engine, rpc = host
    for n in range(3):
        engine.start_new("seq_orch", f"p{n}", json.dumps(json.dumps({"names": []})))
        engine.wait_for(f"p{n}")
    seen: list[str] = []
    token = None
    for _ in range(5):
        req = urllib.request.Request(rpc.rpc_base_url + "instances?top=2&showInput=false")
        if token:
            req.add_header("x-ms-continuation-token", token)
        with urllib.request.urlopen(req) as resp:
            page = json.loads(resp.read())
            token = resp.headers.get("x-ms-continuation-token")
        assert all(item["input"] is None for item in page)
        seen += [item["instanceId"] for item in page]
        if not token:
            break

    assert seen == ["p0", "p1", "p2"]


def test_the_sdk_client_reads_an_entitys_state(host: tuple[DurableEngine, RpcServer]) -> None:
    """``read_entity_state`` (the extension's ``GET entities/{name}/{key}``): what the operator's
    gate route reads (intake/gate_api.py)."""
    import azure.durable_functions as df

    engine, rpc = host
    engine.start_new("counter_orch", "c-1", json.dumps({"key": "k", "adds": 3}))
    engine.wait_for("c-1", timeout=20)

    async def scenario() -> tuple[Any, Any]:
        client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
        found = await client.read_entity_state(df.EntityId("counter", "k"))
        missing = await client.read_entity_state(df.EntityId("counter", "none"))
        return found, missing

    found, missing = run(scenario())
    assert (found.entity_exists, found.entity_state) == (True, 3)
    assert missing.entity_exists is False
