"""The Durable client, as the intake uses it: one place for the SDK's quirks.

The 1.x SDK (``azure-functions-durable``) says what went wrong in a bare ``Exception``'s text
("already exists", "is gone", "No instance"), answers a status read of an unknown instance with
a ``TypeError`` (the extension's 404 has an empty body the SDK cannot parse), and hands inputs
and outputs over as JSON text or decoded. :data:`FAILURES` maps those failures to the app's own
errors, in the manner of httpx's ``map_exceptions``; :class:`TaskHub` is the one surface the
intake calls, so a move to another SDK version touches this module only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Final, Protocol

import azure.durable_functions as df


class TaskHubError(Exception):
    """A failure of the task hub the app acts on (the SDK's own text is the message)."""


class InstanceExists(TaskHubError):
    """``start`` of an id whose instance already runs."""


class InstanceGone(TaskHubError):
    """An event raised to an instance that has ended."""


class InstanceUnknown(TaskHubError):
    """An event raised to an id the task hub does not know."""


#: (what the SDK raises, the text that tells it apart, the app's error). First match wins.
FAILURES: Final[tuple[tuple[type[BaseException], str, type[TaskHubError]], ...]] = (
    (Exception, "already exists", InstanceExists),
    (Exception, "is gone", InstanceGone),
    (Exception, "No instance", InstanceUnknown),
)


@contextlib.contextmanager
def map_failures() -> Iterator[None]:
    """Turn the SDK's failures named in :data:`FAILURES` into the app's errors; anything
    else (storage or network trouble) passes as it came."""
    try:
        yield
    except TaskHubError:
        raise
    except Exception as exc:
        for raised, text, error in FAILURES:
            if isinstance(exc, raised) and text in str(exc):
                raise error(str(exc)) from exc
        raise


def decode_payload(raw: object) -> Any:
    """An input, output or status as the SDK hands it over (JSON text or decoded), decoded;
    None when the text is not JSON."""
    if isinstance(raw, str | bytes):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


class TaskHub(Protocol):
    """What the intake asks of the task hub (the production one is :class:`DurableTaskHub`;
    the unit tests' fake implements the same)."""

    async def start(self, name: str, instance_id: str, payload: object) -> bool:
        """Start ``name`` under ``instance_id``; False when it already runs (nothing started)."""
        ...

    async def status(
        self, instance_id: str, *, show_input: bool = False
    ) -> df.DurableOrchestrationStatus | None:
        """The instance's status, or None when the task hub does not know it."""
        ...

    async def raise_event(self, instance_id: str, name: str, data: object) -> None:
        """Raises :class:`InstanceGone` or :class:`InstanceUnknown`."""
        ...

    async def terminate(self, instance_id: str, reason: str) -> None: ...

    async def purge(self, instance_id: str) -> int:
        """Delete the instance's history; the number of instances deleted."""
        ...

    async def entity_state(self, name: str, key: str) -> Any:
        """A Durable entity's state as its function last set it; None when it does not
        exist."""
        ...

    def query_pages(
        self,
        *,
        created_from: datetime,
        created_to: datetime,
        runtime_status: Iterable[str] = (),
        page_size: int = ...,
    ) -> AsyncGenerator[Any, None]:
        """The instances created in the window, a page at a time
        (:func:`dsr_export.adapters.task_hub.query_pages`)."""
        ...


class DurableTaskHub:
    """:class:`TaskHub` over the SDK's client binding."""

    def __init__(
        self,
        client: df.DurableOrchestrationClient,
        query: Callable[..., AsyncGenerator[Any, None]] | None = None,
    ) -> None:
        from dsr_export.adapters.task_hub import query_pages

        self.client = client
        self._query = query or query_pages

    async def start(self, name: str, instance_id: str, payload: object) -> bool:
        try:
            with map_failures():
                await self.client.start_new(name, instance_id, payload)
        except InstanceExists:
            return False
        return True

    async def status(
        self, instance_id: str, *, show_input: bool = False
    ) -> df.DurableOrchestrationStatus | None:
        try:
            found = await self.client.get_status(instance_id, show_input=show_input)
        except TypeError:  # the extension's 404: an empty body the SDK cannot parse
            return None
        if found is None or not found.runtime_status:
            return None
        return found

    async def raise_event(self, instance_id: str, name: str, data: object) -> None:
        with map_failures():
            await self.client.raise_event(instance_id, name, data)

    async def terminate(self, instance_id: str, reason: str) -> None:
        with map_failures():
            await self.client.terminate(instance_id, reason)

    async def purge(self, instance_id: str) -> int:
        with map_failures():
            result = await self.client.purge_instance_history(instance_id)
        return int(getattr(result, "instances_deleted", 0) or 0)

    async def entity_state(self, name: str, key: str) -> Any:
        with map_failures():
            found = await self.client.read_entity_state(df.EntityId(name, key))
        if not found.entity_exists:
            return None
        return decode_payload(found.entity_state)

    def query_pages(
        self,
        *,
        created_from: datetime,
        created_to: datetime,
        runtime_status: Iterable[str] = (),
        page_size: int = 100,
    ) -> AsyncGenerator[Any, None]:
        return self._query(
            self.client,
            created_from=created_from,
            created_to=created_to,
            runtime_status=runtime_status,
            page_size=page_size,
        )
