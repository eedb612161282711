"""Queue triggers: polls Azure Storage queues (Azurite) the way the Functions host does.

What the app can observe is reproduced: base64 message bodies unless host.json says `none`, the
dequeue count growing with each failed delivery, `visibilityTimeout` between retries, deletion on
success and a move to `<queue>-poison` after `maxDequeueCount` failures. A body that is not
base64 (under `base64`) never reaches the function: it is moved to `<queue>-poison` on its first
delivery, as the Storage Queues extension does. Polling backs off when the queue is empty, capped
at a couple of seconds so local runs stay quick.

What an operator sees is reproduced too: each move to the poison queue logs the extension's own
warning, word for word and under its category (the logger name), so an alert on that line in
Application Insights can be tried offline:

    Microsoft.Azure.WebJobs.Host.Queues.QueueProcessor  WARNING
    Message has reached MaxDequeueCount of 5. Moving message to queue 'dsr-requests-poison'.

and, before it, for a body that could not be decoded:

    Azure.Storage.Queues.QueueServiceClient  WARNING
    Message decoding has failed! Check MessageEncoding settings. MessageId=<id>.

(Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/
Shared/Queues/QueueProcessor.cs `CopyMessageToPoisonQueueAsync`, whose logger is
`ILogger<QueueProcessor>` since PR #22362 (before it: `Host.Triggers.Queue`), and
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/QueueServiceClientProvider.cs.)
The first line says "reached MaxDequeueCount" even for an undecodable message moved on its first
delivery: that is the extension's text, kept as it is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.triggers.common import (
    FunctionSpec,
    Invoker,
    UnsupportedFunctionError,
    log_invocation,
    new_invocation_id,
    resolve_app_setting,
    timespan_seconds,
)

log = logging.getLogger("devhost.functions")
#: The Functions host's categories for these lines (see the module docstring).
poison_log = logging.getLogger("Microsoft.Azure.WebJobs.Host.Queues.QueueProcessor")
decoding_log = logging.getLogger("Azure.Storage.Queues.QueueServiceClient")

#: Upper bound on the empty-queue back-off: the host's default (1 min) would make dev runs slow.
DEV_MAX_POLLING_CAP_S = 2.0
_MIN_POLLING_S = 0.1
#: How long a message stays invisible while the function runs (the host uses 10 min and renews).
_PROCESSING_VISIBILITY_S = 600
DEFAULT_CONNECTION = "AzureWebJobsStorage"


def connection_from_env(name: str) -> str:
    """Resolves a binding's `connection` like the host: the app setting, else `AzureWebJobs<name>`.

    Raises KeyError when neither is set.
    """
    for candidate in (name, f"AzureWebJobs{name}"):
        value = os.environ.get(candidate)
        if value:
            return value
    raise KeyError(name)


@dataclass(frozen=True)
class QueueOptions:
    """The `extensions.queues` section of host.json, with the host's defaults."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    max_polling_interval_s: float = DEV_MAX_POLLING_CAP_S
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any] | None) -> QueueOptions:
        section = ((host_json or {}).get("extensions") or {}).get("queues") or {}
        if not isinstance(section, Mapping):
            raise ValueError("host.json extensions.queues must be an object")
        encoding = str(section.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"host.json messageEncoding must be base64 or none, not {encoding!r}")
        batch_size = int(section.get("batchSize", 16))
        max_dequeue = int(section.get("maxDequeueCount", 5))
        if not 1 <= batch_size <= 32:
            raise ValueError("host.json batchSize must be between 1 and 32")
        if max_dequeue < 1:
            raise ValueError("host.json maxDequeueCount must be at least 1")
        polling = DEV_MAX_POLLING_CAP_S
        if "maxPollingInterval" in section:
            polling = timespan_seconds(section["maxPollingInterval"], what="maxPollingInterval")
        visibility = 0.0
        if "visibilityTimeout" in section:
            visibility = timespan_seconds(section["visibilityTimeout"], what="visibilityTimeout")
        return cls(
            batch_size=batch_size,
            max_dequeue_count=max_dequeue,
            visibility_timeout_s=visibility,
            max_polling_interval_s=max(_MIN_POLLING_S, min(polling, DEV_MAX_POLLING_CAP_S)),
            message_encoding=encoding,
        )


class QueueListener:
    """Polls one queue for one function, on its own thread."""

    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        queue_connection: Callable[[str], str],
        options: QueueOptions,
    ) -> None:
        self.spec = spec
        self.queue_name = resolve_app_setting(str(spec.trigger["queueName"]))
        self._connection_name = str(spec.trigger.get("connection") or DEFAULT_CONNECTION)
        self._queue_connection = queue_connection
        self._invoker = invoker
        self._options = options
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            connection_string = self._queue_connection(self._connection_name)
        except KeyError:
            raise UnsupportedFunctionError(
                f"function {self.spec.name!r}: no connection string for connection "
                f"{self._connection_name!r}"
            ) from None
        # No encode/decode policy: the raw text is needed to move a message to the poison
        # queue unchanged, and decoding is done here so a bad body counts as a failed delivery.
        self._client = QueueClient.from_connection_string(connection_string, self.queue_name)
        self._poison = QueueClient.from_connection_string(
            connection_string, f"{self.queue_name}-poison"
        )
        self._pool = ThreadPoolExecutor(
            max_workers=self._options.batch_size, thread_name_prefix=f"devhost-q-{self.spec.name}"
        )
        self._thread = threading.Thread(
            target=self._run, name=f"devhost-queue-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("queue listener %s still busy after %.0fs", self.spec.name, timeout_s)
            self._thread = None
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._client.close()
            self._poison.close()

    def _run(self) -> None:
        delay = _MIN_POLLING_S
        failing = False
        while not self._stop.is_set():
            try:
                messages = list(
                    self._client.receive_messages(
                        messages_per_page=self._options.batch_size,
                        max_messages=self._options.batch_size,
                        visibility_timeout=_PROCESSING_VISIBILITY_S,
                    )
                )
                failing = False
            except ResourceNotFoundError:
                messages = []  # the host waits for a queue that does not exist yet, too
            except AzureError as error:
                if not failing:
                    log.warning(
                        "polling queue %s failed: %s", self.queue_name, type(error).__name__
                    )
                failing = True
                messages = []
            if messages:
                delay = _MIN_POLLING_S
                list(self._pool.map(self._process, messages))
                continue
            self._stop.wait(delay)
            delay = min(delay * 2, self._options.max_polling_interval_s)

    def _process(self, message: QueueMessage) -> None:
        dequeue_count = int(message.dequeue_count or 0)
        if self._stop.is_set():
            self._settle(lambda: self._client.update_message(message, visibility_timeout=0))
            return
        invocation_id = new_invocation_id()
        started = time.monotonic()
        if dequeue_count > self._options.max_dequeue_count:
            self._to_poison(message)
            self._log(message, "poisoned", started, invocation_id)
            return
        try:
            body = self._decode(str(message.content or ""))
        except ValueError:
            decoding_log.warning(
                "Message decoding has failed! Check MessageEncoding settings. MessageId=%s.",
                message.id,
            )
            self._to_poison(message)
            self._log(message, "poisoned", started, invocation_id)
            return
        try:
            trigger_value = FuncQueueMessage(  # type: ignore[no-untyped-call]
                id=message.id,
                body=body,
                dequeue_count=dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            self._invoker.invoke(self.spec, trigger_value, invocation_id)
        except Exception:
            log.exception(
                "function %s failed on message %s (dequeue_count=%d, invocation_id=%s)",
                self.spec.name,
                message.id,
                dequeue_count,
                invocation_id,
            )
            if dequeue_count >= self._options.max_dequeue_count:
                self._to_poison(message)
                self._log(message, "poisoned", started, invocation_id)
            else:
                visibility = round(self._options.visibility_timeout_s)
                self._settle(
                    lambda: self._client.update_message(message, visibility_timeout=visibility)
                )
                self._log(message, "failed", started, invocation_id)
            return
        self._settle(lambda: self._client.delete_message(message))
        self._log(message, "succeeded", started, invocation_id)

    def _decode(self, content: str) -> bytes:
        if self._options.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError(
                "message is not valid base64 (host.json messageEncoding is base64)"
            ) from error

    def _to_poison(self, message: QueueMessage) -> None:
        """Copy the message, unchanged, to `<queue>-poison` and delete it, as the host does."""
        poison_log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self._options.max_dequeue_count,
            self._poison.queue_name,
        )
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(str(message.content or ""))
        self._settle(lambda: self._client.delete_message(message))
        log.warning(
            "message %s moved to %s after %s deliveries",
            message.id,
            self._poison.queue_name,
            message.dequeue_count,
        )

    def _settle(self, action: Callable[[], object]) -> None:
        """Deletes or releases a message; a lost pop receipt only means redelivery."""
        try:
            action()
        except ResourceNotFoundError:
            log.warning("queue %s: message already gone or pop receipt stale", self.queue_name)

    def _log(self, message: QueueMessage, status: str, started: float, invocation_id: str) -> None:
        log_invocation(
            self.spec,
            status,
            time.monotonic() - started,
            invocation_id,
            queue=self.queue_name,
            message_id=message.id,
            dequeue_count=message.dequeue_count,
        )
