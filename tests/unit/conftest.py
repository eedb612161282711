"""The unit tests' fakes for the parts of the composition root that need a live host."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.intake_fakes import MemoryEvidence, QueueTrimmings, fake_task_hub_query


@pytest.fixture(autouse=True)
def _fake_task_hub_query(swap: Callable[..., None]) -> None:
    swap(task_hub_query=fake_task_hub_query)


@pytest.fixture(autouse=True)
def queue_trimmer(swap: Callable[..., None]) -> QueueTrimmings:
    """The retention run's queue clearing, recorded (tests/integration clears real queues)."""
    trimmer = QueueTrimmings()
    swap(queue_trimmer=trimmer)
    return trimmer


@pytest.fixture(autouse=True)
def evidence_log(swap: Callable[..., None]) -> MemoryEvidence:
    """Each unit test's evidence, in memory (tests/integration covers the real log)."""
    log = MemoryEvidence()
    swap(evidence_log=log)
    return log
