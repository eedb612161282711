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
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import azure.durable_functions as df

from dsr_export import composition
from dsr_export.adapters.durable_client import TaskHub
from dsr_export.domain import dsr_keys
from dsr_export.domain.status import TERMINAL_PHASES, Phase, StatusDocument
from dsr_export.domain.steps import ORCHESTRATOR
from intake.service import LIVE_STATES, document

#: The query's page size for a list call: a few times the rows wanted, so that each round of
#: narrowing keeps a small part of the window; within what the backends answer at once.
MIN_PAGE: Final = 100
MAX_PAGE: Final = 1000
#: The list covers DSRs created this long ago at most: longer than any DSR runs, and the
#: query stays bounded however long the task hub keeps history.
LIST_WINDOW: Final = timedelta(days=400)
#: A safety bound on narrowing rounds (each at least halves the window's candidates).
MAX_ROUNDS: Final = 64

Key = tuple[str, str]
Row = tuple[Key, StatusDocument]


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
    hub: TaskHub,
    *,
    created_from: datetime,
    created_to: datetime,
    runtime_status: Iterable[str],
    after: Key | None,
    wanted: int,
    accept: Callable[[df.DurableOrchestrationStatus], StatusDocument | None],
) -> ListRead:
    """The ``wanted`` oldest rows after ``after`` in the window, each the document ``accept``
    makes of an instance it takes (None: not a row of this list)."""
    scan = _Scan(hub, sorted(set(runtime_status)), after, wanted, accept, ListRead([]))
    low = created_from
    if after is not None and after[0]:
        low = max(low, datetime.fromisoformat(after[0]))
    high = created_to
    to_the_end = False
    for _ in range(MAX_ROUNDS):
        rows, complete = await scan.window(low, high, to_the_end=to_the_end)
        if complete:
            scan.read.rows = rows[:wanted]
            return scan.read
        bound = _created(rows[wanted - 1][0])
        if bound is None or bound >= high:
            to_the_end = True  # every candidate shares the bound's time: read it all
        else:
            high = bound
    raise RuntimeError("the list's window did not narrow")  # pragma: no cover - bounded above


@dataclass
class _Scan:
    """One list call's reading of the task hub: what it asks for, and what reading cost."""

    hub: TaskHub
    statuses: list[str]
    after: Key | None
    wanted: int
    accept: Callable[[df.DurableOrchestrationStatus], StatusDocument | None]
    read: ListRead

    async def window(
        self, low: datetime, high: datetime, *, to_the_end: bool
    ) -> tuple[list[Row], bool]:
        """The window's rows, oldest first, and whether the window was read to its end; its
        reading stops once it holds ``wanted`` rows (unless ``to_the_end``)."""
        found: dict[str, Row] = {}
        self.read.queries += 1
        pages = self.hub.query_pages(
            created_from=low,
            created_to=high,
            runtime_status=self.statuses,
            page_size=max(MIN_PAGE, min(MAX_PAGE, 4 * self.wanted)),
        )
        complete = False
        async with contextlib.aclosing(pages):
            async for page in pages:
                self._take(page.statuses, found)
                if not page.more:
                    complete = True
                    break
                if len(found) >= self.wanted and not to_the_end:
                    break  # enough to bound a narrower window: stop reading this one
        return sorted(found.values(), key=lambda row: row[0]), complete

    def _take(self, statuses: list[df.DurableOrchestrationStatus], found: dict[str, Row]) -> None:
        self.read.pages += 1
        self.read.statuses += len(statuses)
        for status in statuses:
            key = sort_key(status)
            if self.after is not None and key <= self.after:
                continue
            doc = self.accept(status)
            if doc is not None:
                found[key[1]] = (key, doc)


def _created(key: Key) -> datetime | None:
    try:
        return datetime.fromisoformat(key[0])
    except ValueError:  # an instance without a created time: no bound to narrow to
        return None


@dataclass(frozen=True)
class ListQuery:
    """The list's filters and page: a phase, overdue or not, the page size, and the cursor
    (the last row of the previous page)."""

    phase: str | None
    overdue: bool | None
    top: int
    after: Key | None
    #: ``TENANCY=multi``: the tenant keys of the DSRs listed (the caller's reach, narrowed by
    #: ``tenantId``), None for every DSR (``single``, or a caller reaching every tenant).
    tenant_keys: frozenset[str] | None = None


async def page(hub: TaskHub, query: ListQuery, now: datetime) -> tuple[list[Row], bool]:
    """The DSRs of one page of the list, oldest first (closest to their deadline), and whether
    a next page exists. Paging is keyset (``after``), so pages stay stable while new DSRs
    arrive (they sort after it)."""

    def accept(status: df.DurableOrchestrationStatus) -> StatusDocument | None:
        if status.name != ORCHESTRATOR or not status.runtime_status:
            return None  # a notice orchestration, or a row the extension could not read
        if query.tenant_keys is not None and not _of_tenants(status, query.tenant_keys):
            return None  # another tenant's DSR: not even counted
        doc = document(status, now)
        if doc.tenant_id is None:  # a DSR not started yet: its id names its tenant (multi)
            doc = dataclasses.replace(doc, tenant_id=composition.tenant_id_of(doc.request_id))
        if query.phase is not None and doc.phase != query.phase:
            return None
        if query.overdue is not None and doc.overdue is not query.overdue:
            return None
        return doc

    # One more than the page: whether a next page exists, without reading the task hub on.
    read = await oldest(
        hub,
        created_from=now - LIST_WINDOW,
        created_to=now,
        runtime_status=_runtime_filter(query.phase) if query.phase else (),
        after=query.after,
        wanted=query.top + 1,
        accept=accept,
    )
    return read.rows[: query.top], len(read.rows) > query.top


def _of_tenants(status: df.DurableOrchestrationStatus, keys: frozenset[str]) -> bool:
    """Whether the instance is a DSR of one of the tenants whose keys are ``keys``: its id
    names its tenant's key (:mod:`dsr_export.domain.dsr_keys`)."""
    parts = dsr_keys.split(str(status.instance_id))
    return parts is not None and parts.key in keys


def _runtime_filter(phase: str) -> list[str]:
    """Narrow the task hub query: the orchestrator ends every DSR itself (Completed), so a
    terminal phase lives in a finished instance and any other phase in a live one."""
    names: tuple[str, ...] = ("Completed", "Failed", "Terminated", "Canceled")
    if Phase(phase) not in TERMINAL_PHASES:
        names = tuple(LIVE_STATES)
    return sorted(names)
