"""A message that goes to ``<queue>-poison`` is logged as the Functions host logs it, word for
word and under the host's category, so an alert on that line can be tried offline; a body that
is not base64 goes there at once, as the Storage Queues extension moves it."""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from devhost.triggers.common import FunctionSpec
from devhost.triggers.queue import QueueListener, QueueOptions

pytestmark = pytest.mark.azurite

POISON_CATEGORY = "Microsoft.Azure.WebJobs.Host.Queues.QueueProcessor"
DECODING_CATEGORY = "Azure.Storage.Queues.QueueServiceClient"


class _Invoker:
    """Stands in for the worker: records each delivery, fails when the body says so."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def invoke(self, spec: FunctionSpec, value: Any, invocation_id: str) -> None:
        body = value.get_body()
        with self.lock:
            self.bodies.append(body)
        if body == b"fail":
            raise RuntimeError("the function failed")


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    with Azurite() as azurite:  # plain HTTP: the listener's clients need no CA bundle
        yield azurite.connection_string


@pytest.fixture
def listen(storage: str) -> Iterator[Callable[[int], tuple[str, _Invoker]]]:
    listeners: list[QueueListener] = []

    def start(max_dequeue_count: int) -> tuple[str, _Invoker]:
        queue = f"q{uuid.uuid4().hex[:10]}"
        QueueClient.from_connection_string(storage, queue).create_queue()
        spec = FunctionSpec(
            name="on_message",
            trigger_type="queueTrigger",
            trigger={"type": "queueTrigger", "queueName": queue, "connection": "Storage"},
            trigger_param="msg",
            client_param=None,
            entry=lambda **_: None,
            wants_context=False,
        )
        invoker = _Invoker()
        options = QueueOptions(max_dequeue_count=max_dequeue_count, visibility_timeout_s=0)
        listener = QueueListener(spec, invoker, lambda _: storage, options)  # type: ignore[arg-type]
        listener.start()
        listeners.append(listener)
        return queue, invoker

    yield start
    for listener in listeners:
        listener.stop()


def _poisoned(storage: str, queue: str, timeout: float = 20.0) -> list[str]:
    poison = QueueClient.from_connection_string(storage, f"{queue}-poison")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = [str(m.content) for m in poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            found = []
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing reached {queue}-poison")


def _outcome_lines(caplog: pytest.LogCaptureFixture, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in caplog.messages if "function=on_message" in m]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no outcome line for on_message")


def _lines(caplog: pytest.LogCaptureFixture, category: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == category]


def test_a_message_failing_every_delivery_is_poisoned_with_the_hosts_line(
    storage: str,
    listen: Callable[[int], tuple[str, _Invoker]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    queue, invoker = listen(3)
    body = base64.b64encode(b"fail").decode()
    QueueClient.from_connection_string(storage, queue).send_message(body)
    assert _poisoned(storage, queue) == [body]  # moved unchanged
    assert invoker.bodies == [b"fail"] * 3
    assert _lines(caplog, POISON_CATEGORY) == [
        (
            logging.WARNING,
            f"Message has reached MaxDequeueCount of 3. Moving message to queue '{queue}-poison'.",
        )
    ]
    assert _lines(caplog, DECODING_CATEGORY) == []


def test_a_body_that_is_not_base64_is_poisoned_at_once_with_both_lines(
    storage: str,
    listen: Callable[[int], tuple[str, _Invoker]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The extension moves it on its first delivery (the function never runs) and still says
    "reached MaxDequeueCount": its text, kept as it is."""
    caplog.set_level(logging.INFO)
    queue, invoker = listen(5)
    sent = QueueClient.from_connection_string(storage, queue).send_message("not base64 !")
    assert _poisoned(storage, queue) == ["not base64 !"]
    assert invoker.bodies == []
    assert _lines(caplog, DECODING_CATEGORY) == [
        (
            logging.WARNING,
            f"Message decoding has failed! Check MessageEncoding settings. MessageId={sent.id}.",
        )
    ]
    assert _lines(caplog, POISON_CATEGORY) == [
        (
            logging.WARNING,
            f"Message has reached MaxDequeueCount of 5. Moving message to queue '{queue}-poison'.",
        )
    ]
    # The listener logs the delivery's outcome after the move: wait for it, not for the move.
    outcomes = _outcome_lines(caplog)
    assert len(outcomes) == 1
    assert "status=poisoned" in outcomes[0]
    assert "dequeue_count=1" in outcomes[0]
