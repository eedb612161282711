"""I-2: the retention run's queue clearing against Azurite's queue service.

Azurite cannot backdate a message, so the cut-off moves instead: a cut-off after the messages
were sent clears them all, one before keeps them all, visible again at once (an operator
peeking at the poison queue still sees what was kept).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from dsr_export.adapters.queue_retention import BATCH, clear_older
from dsr_export.adapters.rejections import queue_client

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    with Azurite() as azurite:  # plain HTTP: a connection string, no CA bundle
        yield azurite.connection_string


def _queue(storage: str, count: int) -> QueueClient:
    name = f"poison{uuid.uuid4().hex[:10]}"
    raw = QueueClient.from_connection_string(storage, name)
    raw.create_queue()
    raw.send_message("not base64 !")  # a poisoned body need not even decode
    for n in range(count - 1):
        body = f'{{"requestId": "R-{n}", "user": "ada@contoso.example"}}'
        raw.send_message(base64.b64encode(body.encode()).decode())
    return queue_client({"AzureWebJobsStorage": storage}, name=name, encoded=False)


def test_messages_older_than_the_cutoff_are_deleted_and_counted(storage: str):
    count = BATCH + 8  # more than one batch
    client = _queue(storage, count)
    assert clear_older(client, datetime.now(UTC) + timedelta(minutes=5)) == count
    assert list(client.peek_messages(max_messages=32)) == []


def test_younger_messages_are_kept_and_visible_at_once(storage: str):
    client = _queue(storage, 5)
    assert clear_older(client, datetime.now(UTC) - timedelta(days=3)) == 0
    kept = list(client.peek_messages(max_messages=32))
    assert len(kept) == 5, "made visible again, not hidden for the hold"
    assert "not base64 !" in {message.content for message in kept}


def test_a_queue_never_created_has_nothing_to_clear(storage: str):
    client = queue_client({"AzureWebJobsStorage": storage}, name="never-made", encoded=False)
    assert clear_older(client, datetime.now(UTC)) == 0
