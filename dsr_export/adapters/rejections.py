"""Where refused queue messages are recorded for an operator: the ``dsr-requests-rejected`` queue.

A refused message must not be retried (raising would redeliver it five times, then bury it in
the poison queue without a reason) nor vanish. So the intake acknowledges it and leaves one
record here: why, which fields, which message, never the raw body. The body may carry the data
subject's UPN or e-mail, and this queue has no retention control beyond the message TTL; the
ticket system still holds the original, found through ``requestId`` or the message id.

The queue lives in the host storage account (``AzureWebJobsStorage``), reached the same way the
host reaches it: a connection string locally, the managed identity in Azure.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from dsr_export.adapters.credentials import host_storage_identity

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient

REJECTED_QUEUE: Final = "dsr-requests-rejected"
#: The records' own time to live, a backstop: the retention run deletes them after
#: ``QUEUE_RETENTION_DAYS`` (the ``dsr_request_rejected`` log line keeps the same facts longer).
_TTL_SECONDS: Final = 30 * 24 * 3600


class RejectionSink(Protocol):
    """Anything that can keep a rejection record."""

    def record(self, rejection: Mapping[str, Any]) -> None:
        """Keep ``rejection``; raise if it could not be kept (the message is then retried)."""


class QueueRejections:
    """Records rejections as base64 JSON messages, the same encoding as the intake queue."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    def record(self, rejection: Mapping[str, Any]) -> None:
        """Send the record; create the queue on first use."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        text = json.dumps(rejection, sort_keys=True)
        try:
            self._client.send_message(text, time_to_live=_TTL_SECONDS)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            self._client.send_message(text, time_to_live=_TTL_SECONDS)


def queue_client(
    env: Mapping[str, str] = os.environ,
    identity: Callable[[str | None], TokenCredential] = host_storage_identity,
    *,
    name: str = REJECTED_QUEUE,
    encoded: bool = True,
) -> QueueClient:
    """A queue (the rejected queue unless ``name`` says) in the host storage account,
    configured like the host's own access; ``encoded``: messages sent as base64 text.

    ``identity`` builds the credential for identity-based host storage from the client id the
    platform is given (``AzureWebJobsStorage__clientId``).
    """
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    options: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy()} if encoded else {}
    connection = env.get("AzureWebJobsStorage", "").strip()
    if connection:
        return QueueClient.from_connection_string(connection, name, **options)
    endpoint = env.get("AzureWebJobsStorage__queueServiceUri", "").strip()
    if not endpoint:
        raise RuntimeError(
            "neither AzureWebJobsStorage nor AzureWebJobsStorage__queueServiceUri is set"
        )
    client_id = env.get("AzureWebJobsStorage__clientId", "").strip() or None
    credential = identity(client_id)
    return QueueClient(endpoint, name, credential=credential, **options)
