"""F-5: two first submissions of one new id, at once, for two different people.

Both write the ``received`` record before ``start_new`` decides (first writer wins the record);
the task hub picks the winner. The evidence must describe the DSR that started, whatever the
interleaving: here the loser writes the record first and the winner starts first, the order
the review saw in 2 of 8 races, made deterministic with gates on ``start_new``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from dsr_export.domain import lifecycle
from dsr_export.domain.callers import Caller, Role
from dsr_export.domain.evidence import Kind, parse_record, verify
from intake.service import Admission, start_or_get
from tests.unit.intake_fakes import (
    OTHER_ID,
    T0,
    USER_ID,
    FakeDurableClient,
    MemoryEvidence,
    intake_settings,
    valid_payload,
)

ALICE = Caller("application", "ticketing-a", frozenset({Role.SUBMIT, Role.READ}))
BOB = Caller("application", "ticketing-b", frozenset({Role.SUBMIT, Role.READ}))


class GatedClient(FakeDurableClient):
    """``start`` waits for its caller's gate: the test says who reaches the task hub first."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}
        self.arrived: list[str] = []
        self.by: dict[str, str] = {}

    async def start(self, name: str, instance_id: str, payload: Any) -> bool:
        who = payload["submittedBy"]["id"]
        self.arrived.append(who)
        await self.gates.setdefault(who, asyncio.Event()).wait()
        return await super().start(name, instance_id, payload)


@pytest.fixture(autouse=True)
def _settings(swap: Callable[..., None]):
    swap(clock=lambda: T0)
    with intake_settings():
        yield


async def _race(first_writer_loses: bool) -> tuple[GatedClient, Any]:
    client = GatedClient()
    for who in ("ticketing-a", "ticketing-b"):
        client.gates[who] = asyncio.Event()

    async def submit(caller: Caller, user: str) -> Any:
        return await start_or_get(
            client, valid_payload("NEW-1", user=user), now=T0, source="http", caller=caller
        )

    # Alice runs first: she writes `received`, then waits at start_new; Bob finds her record.
    alice = asyncio.create_task(submit(ALICE, USER_ID))
    while client.arrived != ["ticketing-a"]:
        await asyncio.sleep(0)
    bob = asyncio.create_task(submit(BOB, OTHER_ID))
    while len(client.arrived) < 2:
        await asyncio.sleep(0)
    order = ("ticketing-b", "ticketing-a") if first_writer_loses else ("ticketing-a", "ticketing-b")
    for who in order:
        client.gates[who].set()
        await asyncio.sleep(0)
    return client, await asyncio.gather(alice, bob)


def _records(log: MemoryEvidence) -> list[Any]:
    return [parse_record(line.encode()) for line in log.read("NEW-1")]


def test_the_received_record_describes_the_dsr_that_started(evidence_log: MemoryEvidence):
    client, (alice, bob) = asyncio.run(_race(first_writer_loses=True))
    assert (alice.verdict, bob.verdict) == (Admission.CONFLICT, Admission.STARTED)
    [(_, _, started)] = client.started
    assert started["submittedBy"]["id"] == "ticketing-b"
    records = _records(evidence_log)
    received = [r for r in records if r.kind is Kind.RECEIVED][-1]
    assert received.data["submitterId"] == "ticketing-b"
    assert received.data["userObjectId"] == OTHER_ID
    assert [r.kind for r in records] == [Kind.RECEIVED, Kind.RECEIVED]
    assert received.data["supersedesSeq"] == 0
    assert lifecycle.received_record(records) == received, "what the readers take"
    assert verify(evidence_log.read("NEW-1"), request_id="NEW-1").ok


def test_no_correction_when_the_first_writer_also_started(evidence_log: MemoryEvidence):
    _, (alice, bob) = asyncio.run(_race(first_writer_loses=False))
    assert (alice.verdict, bob.verdict) == (Admission.STARTED, Admission.CONFLICT)
    records = _records(evidence_log)
    assert len(records) == 1
    assert records[0].data["submitterId"] == "ticketing-a"
