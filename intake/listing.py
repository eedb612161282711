"""The first rows of the DSR list, oldest first, without reading the whole task hub.

The list is ordered by created time (then id), but the extension's instance query answers in
its own order (the Azure Storage backend in instance id order, the offline host in created
order), so no prefix of its pages is the oldest rows. Reading every page of the list's window
on every call cost time linear in the DSRs the task hub holds.

So the window is narrowed instead. The query's pages are read only until they hold ``wanted``
rows that belong to the answer (a DSR, matching the filters, after the caller's cursor); if the
window has more pages, the ``wanted``-th oldest of those rows bounds a narrower window that
still holds at least ``wanted`` of them, and that window is queried the same way. Each round
keeps about ``page / wanted`` of the rows, whatever the backend's order; a window read to its
end holds every candidate older than its bound, so its oldest ``wanted`` rows are the answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import azure.durable_functions as df

from dsr_export import composition

#: The query's page size for a list call: a few times the rows wanted, so that each round of
#: narrowing keeps a small part of the window; within what the backends answer at once.
MIN_PAGE: Final = 100
MAX_PAGE: Final = 1000
#: A safety bound on narrowing rounds (each at least halves the window's candidates).
MAX_ROUNDS: Final = 64

Key = tuple[str, str]
Row = tuple[Key, dict[str, Any]]


@dataclass
class ListRead:
    """The rows found (oldest first, at most ``wanted``) and what reading them cost."""

    rows: list[Row]
    queries: int = 0
    pages: int = 0
    statuses: int = 0


def sort_key(status: df.DurableOrchestrationStatus) -> Key:
    """(created time in UTC, instance id): the list's order and its cursor."""
    created = status.created_time.astimezone(UTC).isoformat() if status.created_time else ""
    return (created, str(status.instance_id))


async def oldest(
    client: df.DurableOrchestrationClient,
    *,
    created_from: datetime,
    created_to: datetime,
    runtime_status: Iterable[str],
    after: Key | None,
    wanted: int,
    accept: Callable[[df.DurableOrchestrationStatus], dict[str, Any] | None],
) -> ListRead:
    """The ``wanted`` oldest rows after ``after`` in the window, each the document ``accept``
    makes of an instance it takes (None: not a row of this list)."""
    query = composition.task_hub_query()
    statuses = sorted(set(runtime_status))
    page_size = max(MIN_PAGE, min(MAX_PAGE, 4 * wanted))
    low = created_from
    if after is not None and after[0]:
        low = max(low, datetime.fromisoformat(after[0]))
    high = created_to
    read = ListRead([])
    to_the_end = False
    for _ in range(MAX_ROUNDS):
        found: dict[str, Row] = {}
        complete = False
        read.queries += 1
        pages = query(
            client,
            created_from=low,
            created_to=high,
            runtime_status=statuses,
            page_size=page_size,
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                read.pages += 1
                read.statuses += len(page.statuses)
                for status in page.statuses:
                    key = sort_key(status)
                    if after is not None and key <= after:
                        continue
                    doc = accept(status)
                    if doc is not None:
                        found[key[1]] = (key, doc)
                if not page.more:
                    complete = True
                    break
                if len(found) >= wanted and not to_the_end:
                    break  # enough to bound a narrower window: stop reading this one
        rows = sorted(found.values(), key=lambda row: row[0])
        if complete:
            read.rows = rows[:wanted]
            return read
        bound = _created(rows[wanted - 1][0])
        if bound is None or bound >= high:
            to_the_end = True  # every candidate shares the bound's time: read it all
        else:
            high = bound
    raise RuntimeError("the list's window did not narrow")  # pragma: no cover - bounded above


def _created(key: Key) -> datetime | None:
    try:
        return datetime.fromisoformat(key[0])
    except ValueError:  # an instance without a created time: no bound to narrow to
        return None
