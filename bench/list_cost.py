"""What ``GET /api/exports?top=20`` costs as the task hub fills: 100 DSRs against 10,000.

The list route runs as the worker runs it, with the SDK's client, against the offline host's
copy of the extension's instance API (its SQLite task hub, paged from the created-time index
like the real backends page server-side). The DSRs are written straight into the task hub:
running, created over the last 90 days, ids in no particular order. Reported: the instance
queries and pages the route read, the instances it was handed, and the median time of a call;
the goal of issue 17 is the time at 10,000 within 2x of the time at 100. Nothing asserts it:
this prints counts and ratios (a unit test asserts the pages read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from bench.replay_cost import entries
from devhost.durable import DurableEngine, FastClock, RpcServer, close_sdk_client_session
from devhost.durable.store import Instance, Store, _write_instance
from dsr_export import composition, settings
from dsr_export.adapters.task_hub import Page, query_pages
from dsr_export.domain.steps import ORCHESTRATOR

SIZES = (100, 10_000)
TOP = 20
CALLS = 15
SPREAD = timedelta(days=90)
KEY = "bench-function-key"


@dataclass(frozen=True)
class ListCost:
    dsrs: int
    queries: int
    pages: int
    statuses: int
    median_ms: float


def _fill(path: str, count: int, now: datetime) -> None:
    rng = random.Random(count)  # noqa: S311 - a bench fleet, not a secret
    store = Store(path)
    try:
        with store._tx() as db:
            for n in range(count):
                created = now - SPREAD * rng.random()
                due = created + timedelta(days=30)
                status = {"phase": "exporting", "deadline": due.isoformat(), "progress": 40}
                stamp = created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                _write_instance(
                    db,
                    Instance(
                        instance_id=f"RITM{rng.randrange(10**9):09d}-{n}",
                        name=ORCHESTRATOR,
                        execution_id=f"e{n}",
                        status="Running",
                        input=None,
                        output=None,
                        custom_status=json.dumps(status),
                        created_time=stamp,
                        last_updated_time=stamp,
                    ),
                    insert=True,
                )
    finally:
        store.close()


@contextlib.contextmanager
def _settings() -> Iterator[None]:
    saved = os.environ.get("AUTH_FUNCTION_KEY_ROLES")
    os.environ["AUTH_FUNCTION_KEY_ROLES"] = "DSR.Read"
    settings.clear_cache()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AUTH_FUNCTION_KEY_ROLES", None)
        else:
            os.environ["AUTH_FUNCTION_KEY_ROLES"] = saved
        settings.clear_cache()


async def _calls(route: Any, rpc: RpcServer, count: int) -> list[float]:
    """``CALLS`` timed list calls (after one that opens the connection)."""
    request = func.HttpRequest(
        method="GET",
        url="http://localhost/api/exports",
        headers={"x-functions-key": KEY},
        params={"top": str(TOP)},
        body=b"",
    )
    client = df.DurableOrchestrationClient(json.dumps(rpc.client_binding()))
    took = []
    try:
        for _ in range(CALLS + 1):
            start = time.perf_counter()
            answer = await route.client_function(req=request, client=client)
            took.append(time.perf_counter() - start)
            items = json.loads(answer.get_body())["items"]
            if answer.status_code != 200 or len(items) != min(TOP, count):
                raise RuntimeError(f"the list answered {answer.status_code}")
    finally:
        await close_sdk_client_session()
    return took[1:]


def measure(count: int) -> ListCost:
    """The list's cost with ``count`` running DSRs in the task hub."""
    now = datetime.now(UTC)
    counted = {"queries": 0, "pages": 0, "statuses": 0}

    async def counting(client: Any, **query: Any) -> AsyncGenerator[Page, None]:
        counted["queries"] += 1
        async for page in query_pages(client, **query):
            counted["pages"] += 1
            counted["statuses"] += len(page.statuses)
            yield page

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "taskhub.sqlite")
        _fill(path, count, now)
        engine = DurableEngine([], path, clock=FastClock(speed=1.0))
        with (
            engine,
            RpcServer(engine) as rpc,
            _settings(),
            composition.override(task_hub_query=counting, clock=lambda: now),
        ):
            took = asyncio.run(_calls(entries()["list_dsrs"], rpc, count))
    per_call = CALLS + 1
    return ListCost(
        count,
        counted["queries"] // per_call,
        counted["pages"] // per_call,
        counted["statuses"] // per_call,
        statistics.median(took) * 1000,
    )


def main() -> None:
    costs = [measure(count) for count in SIZES]
    small, large = costs[0], costs[-1]
    print(f"list cost: GET /api/exports?top={TOP}, running DSRs over {SPREAD.days} days")
    print(f"{'DSRs':>7} {'queries':>8} {'pages':>6} {'read':>6} {'median ms':>10} {'ratio':>6}")
    for cost in costs:
        ratio = cost.median_ms / small.median_ms
        print(
            f"{cost.dsrs:>7} {cost.queries:>8} {cost.pages:>6} {cost.statuses:>6} "
            f"{cost.median_ms:>10.1f} {ratio:>6.2f}"
        )
    ratio = large.median_ms / small.median_ms
    verdict = "within" if ratio <= 2 else "NOT within"
    print(f"{large.dsrs} DSRs take {ratio:.2f}x the time of {small.dsrs}: {verdict} the 2x goal")
