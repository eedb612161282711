"""The task hub's instance list, page by page.

The 1.x Durable SDK's ``get_status_all()`` and ``get_status_by()`` read one page of the
extension's instance query (100 rows) and drop its continuation token
(azure-functions-durable-python PR #477, issue #580): with more DSRs than one page, the list
ends silently. So the list is read here from the extension's HTTP API, the one the SDK itself
calls (``{rpcBaseUrl}instances/``), following ``x-ms-continuation-token`` page by page, over a
bounded window of created time and runtime status instead of every instance ever run.

:func:`query_pages` hands the pages over one at a time, so a reader that has what it needs
(the list endpoint's ``top``) stops asking, and one that needs everything (the retention run)
handles a page before it reads the next; :func:`list_instances` reads them all.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

import azure.durable_functions as df
from azure.durable_functions.models.DurableOrchestrationStatus import (
    DurableOrchestrationStatus,
)

TOKEN_HEADER: Final = "x-ms-continuation-token"  # noqa: S105 - a header name
PAGE_SIZE: Final = 100
#: A safety bound: 1,000 pages of 100 is far more DSRs than a tenant files in the window.
MAX_PAGES: Final = 1000


class TaskHubQueryError(RuntimeError):
    """The extension did not answer the instance query (the status is in the message)."""


@dataclass(frozen=True)
class Page:
    """One page of the instance query; ``more`` when the extension holds a next one."""

    statuses: list[DurableOrchestrationStatus]
    more: bool


async def query_pages(
    client: df.DurableOrchestrationClient,
    *,
    created_from: datetime,
    created_to: datetime,
    runtime_status: Iterable[str] = (),
    page_size: int = PAGE_SIZE,
    instance_id_prefix: str | None = None,
) -> AsyncGenerator[Page, None]:
    """The instances created in the window (with one of ``runtime_status``, if given), a page
    at a time, in the extension's order (which the caller must not rely on: the Azure Storage
    backend answers in instance id order). A page is read only when the caller asks for it.
    ``instance_id_prefix``: only the instances whose id starts with it (the extension's
    ``instanceIdPrefix``, 2.7.2 on; the Azure Storage backend reads it as a partition key range,
    so the DSRs of one tenant, ``{tenant key}:``, are read without the others')."""
    import aiohttp  # the SDK's own HTTP client; imported when listing, not at cold start

    # The SDK exposes no paging, and no other way to its binding's base URL.
    base: str = client._orchestration_bindings.rpc_base_url
    params: dict[str, Any] = {
        "createdTimeFrom": created_from.isoformat(),
        "createdTimeTo": created_to.isoformat(),
        "top": page_size,
        "showInput": "false",
    }
    statuses = sorted(set(runtime_status))
    if statuses:
        params["runtimeStatus"] = ",".join(statuses)
    if instance_id_prefix:
        params["instanceIdPrefix"] = instance_id_prefix
    url = f"{base}instances/?{urlencode(params)}"
    token: str | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(MAX_PAGES):
            headers = {TOKEN_HEADER: token} if token else {}
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise TaskHubQueryError(f"instance query answered {response.status}")
                rows = await response.json(content_type=None) or []
                token = response.headers.get(TOKEN_HEADER) or None
            found = [DurableOrchestrationStatus.from_json(item) for item in rows]
            yield Page(found, more=token is not None)
            if token is None:
                break


async def list_instances(
    client: df.DurableOrchestrationClient,
    *,
    created_from: datetime,
    created_to: datetime,
    runtime_status: Iterable[str] = (),
) -> list[DurableOrchestrationStatus]:
    """Every instance created in the window (with one of ``runtime_status``, if given)."""
    found: list[DurableOrchestrationStatus] = []
    async for page in query_pages(
        client, created_from=created_from, created_to=created_to, runtime_status=runtime_status
    ):
        found.extend(page.statuses)
    return found
