"""The task hub's instance list, read to the end.

The 1.x Durable SDK's ``get_status_all()`` and ``get_status_by()`` read one page of the
extension's instance query (100 rows) and drop its continuation token
(azure-functions-durable-python PR #477, issue #580): with more DSRs than one page, the list
ends silently. So the list is read here from the extension's HTTP API, the one the SDK itself
calls (``{rpcBaseUrl}instances/``), following ``x-ms-continuation-token`` page by page, over a
bounded window of created time and runtime status instead of every instance ever run.
"""

from __future__ import annotations

from collections.abc import Iterable
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


async def list_instances(
    client: df.DurableOrchestrationClient,
    *,
    created_from: datetime,
    created_to: datetime,
    runtime_status: Iterable[str] = (),
) -> list[DurableOrchestrationStatus]:
    """Every instance created in the window (with one of ``runtime_status``, if given)."""
    import aiohttp  # the SDK's own HTTP client; imported when listing, not at cold start

    # The SDK exposes no paging, and no other way to its binding's base URL.
    base: str = client._orchestration_bindings.rpc_base_url
    params: dict[str, Any] = {
        "createdTimeFrom": created_from.isoformat(),
        "createdTimeTo": created_to.isoformat(),
        "top": PAGE_SIZE,
        "showInput": "false",
    }
    statuses = sorted(set(runtime_status))
    if statuses:
        params["runtimeStatus"] = ",".join(statuses)
    url = f"{base}instances/?{urlencode(params)}"
    found: list[DurableOrchestrationStatus] = []
    token: str | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(MAX_PAGES):
            headers = {TOKEN_HEADER: token} if token else {}
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise TaskHubQueryError(f"instance query answered {response.status}")
                page = await response.json(content_type=None) or []
                token = response.headers.get(TOKEN_HEADER) or None
            found.extend(DurableOrchestrationStatus.from_json(item) for item in page)
            if token is None:
                break
    return found
