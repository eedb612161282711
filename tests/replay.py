"""The test side of the replay driver: ``Driver(name, input)`` for one of the app's orchestrators.

The driver is :class:`testsupport.replay.ReplayDriver` (the SDK's real replay, synthetic
histories, every answer given by the test). What this adds is finding the orchestrator by name:
through the ``user_function`` fixture (tests/conftest.py), which an autouse fixture there binds
for the test being run, so a test (or a helper it calls) can build ``Driver(name, input)``
without being handed anything. The app is imported only when a test first builds a Driver.
Outside a test, pass ``entry=`` (the orchestrator's ``get_user_function()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from testsupport.replay import START, Action, Entry, Kind, ReplayDriver

__all__ = ["GATE", "Action", "Driver", "Kind", "entry_points"]

#: The app's submit gate entity (orchestrations/submit_gate.py).
GATE = "submit_gate"

#: Gives the lookup of the app's functions by name, once a test asks for it.
Lookup = Callable[[], Callable[[str], Any]]

_bound: Lookup | None = None


@contextmanager
def entry_points(lookup: Lookup) -> Iterator[None]:
    """Let every ``Driver`` built in this block find its orchestrator through ``lookup``."""
    global _bound
    previous, _bound = _bound, lookup
    try:
        yield
    finally:
        _bound = previous


class Driver(ReplayDriver):
    """A :class:`ReplayDriver` for the app's orchestrator called ``name``."""

    def __init__(
        self,
        name: str,
        input: Any,
        *,
        entry: Entry | None = None,
        now: datetime = START,
        instance_id: str = "dsr-test",
        entities: dict[str, Entry] | None = None,
    ) -> None:
        if entry is None:
            if _bound is None:
                raise RuntimeError(
                    "Driver finds the app's orchestrators inside a test only (tests/conftest.py "
                    "binds them); elsewhere pass entry=, the orchestrator's user function"
                )
            entry = _bound()(name)
            if entities is None:
                # The app's entities run as the host would run them (an idle submit gate lets
                # a DSR through at once), unless a test answers them itself (``entities={}``).
                entities = {GATE: _bound()(GATE)}
        super().__init__(entry, name, input, now=now, instance_id=instance_id, entities=entities)
