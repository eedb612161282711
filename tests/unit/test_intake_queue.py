"""The queue intake: same start as HTTP; refusals recorded once, never retried; transient errors
retried into the poison queue with the reason logged."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as WorkerQueueMessage

from dsr_export.adapters import rejections
from intake import queue_intake
from tests.unit.intake_fakes import (
    ALLOWED,
    OTHER_ID,
    SECRET,
    T0,
    FakeDurableClient,
    ListSink,
    app_settings,
    valid_payload,
)


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]) -> Iterator[None]:
    swap(clock=lambda: T0)
    with app_settings(CALLBACK_SIGNING_SECRET=SECRET, CALLBACK_ALLOWED_HOSTS=ALLOWED):
        yield


@pytest.fixture
def sink(swap: Callable[..., None]) -> ListSink:
    kept = ListSink()
    swap(rejections=kept)
    return kept


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def deliver(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., None]:
    """Hand the queue intake one message (a dict is sent as JSON) as the worker does."""

    def receive(body: bytes | dict[str, object], *, dequeue_count: int = 1) -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        msg = WorkerQueueMessage(
            id="msg-42",
            body=raw,
            dequeue_count=dequeue_count,
            insertion_time=datetime(2026, 3, 1, 8, 59, tzinfo=UTC),
        )
        entry = user_function("intake_dsr_message")
        asyncio.run(entry.client_function(msg=msg, client=client))

    return receive


def test_a_valid_message_starts_the_export(deliver, client, sink):
    deliver(valid_payload(regulation="ccpa"))
    assert [s[1] for s in client.started] == ["RITM0001"]
    assert client.started[0][2]["legalDeadline"] == "2026-04-15T09:00:00+00:00"
    assert sink.records == []


def test_a_duplicate_message_is_acknowledged_without_a_second_export(deliver, client, sink):
    deliver(valid_payload())
    deliver(valid_payload())
    assert len(client.started) == 1
    assert sink.records == []


def test_malformed_message_is_recorded_once_and_not_retried(deliver, client, sink, caplog):
    caplog.set_level(logging.WARNING, logger="dsr_export")
    deliver(b'{"requestId": "R-1", "user": "ada@contoso.com"')  # no closing brace
    assert client.started == []
    [record] = sink.records
    assert record["reason"] == "malformed"
    assert record["messageId"] == "msg-42"
    assert record["insertedAt"] == "2026-03-01T08:59:00+00:00"
    assert record["errors"] == [{"pointer": "", "detail": "the body is not valid JSON"}]
    assert "ada@contoso.com" not in json.dumps(record), "no raw body: it may carry the UPN"
    warning = [r for r in caplog.records if "dsr_request_rejected" in r.getMessage()]
    assert len(warning) == 1
    assert "message_id=msg-42" in warning[0].getMessage()
    assert "ada@contoso.com" not in warning[0].getMessage()


def test_invalid_fields_are_named_in_the_record(deliver, client, sink):
    deliver({"requestId": "R-1", "user": "nobody", "callbackUrl": "https://evil.test/"})
    [record] = sink.records
    assert record["reason"] == "invalid"
    assert record["requestId"] == "R-1"
    assert [e["pointer"] for e in record["errors"]] == ["/user", "/callbackUrl"]
    assert client.started == []


def test_a_conflicting_message_is_recorded(deliver, client, sink):
    deliver(valid_payload())
    deliver({"requestId": "RITM0001", "user": OTHER_ID})
    [record] = sink.records
    assert record["reason"] == "conflict"
    assert record["errors"][0]["pointer"] == "/requestId"
    assert len(client.started) == 1


def test_a_transient_failure_raises_so_the_host_retries(deliver, client, sink):
    client.fail_with = ConnectionError("durable extension unreachable")
    with pytest.raises(ConnectionError):
        deliver(valid_payload(), dequeue_count=1)
    assert sink.records == []


def test_the_last_attempt_logs_why_the_message_goes_to_the_poison_queue(
    deliver, client, sink, caplog
):
    caplog.set_level(logging.ERROR, logger="dsr_export")
    client.fail_with = ConnectionError("durable extension unreachable")
    with pytest.raises(ConnectionError):
        deliver(valid_payload(), dequeue_count=queue_intake.MAX_DEQUEUE_COUNT)
    [line] = [r.getMessage() for r in caplog.records if "dsr_request_poisoned" in r.getMessage()]
    assert "message_id=msg-42" in line
    assert "queue=dsr-requests-poison" in line
    assert "durable extension unreachable" in line


def test_a_rejection_that_cannot_be_recorded_is_retried_not_dropped(deliver, sink):
    sink.fail = True
    with pytest.raises(ConnectionError):
        deliver(b"not json")


def test_the_rejected_queue_client_follows_the_host_storage_setting():
    local = rejections.queue_client({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert local.queue_name == "dsr-requests-rejected"
    assert local.account_name == "devstoreaccount1"
    azure = rejections.queue_client(
        {
            "AzureWebJobsStorage__queueServiceUri": "https://hostacct.queue.core.windows.net",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )
    assert azure.url.startswith("https://hostacct.queue.core.windows.net/dsr-requests-rejected")
    with pytest.raises(RuntimeError, match="AzureWebJobsStorage"):
        rejections.queue_client({})


def test_a_message_carries_the_packages_language_and_a_bad_one_is_named(deliver, client, sink):
    deliver(valid_payload(language="de"))
    assert client.started[0][2]["language"] == "de"
    deliver({**valid_payload(), "requestId": "R-9", "language": 7})
    [record] = sink.records
    assert [e["pointer"] for e in record["errors"]] == ["/language"]
