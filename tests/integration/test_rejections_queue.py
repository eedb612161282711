"""The queue intake's rejections against Azurite: the real queue SDK, the queue made on first use.

Moved from tests/unit (issue 18): it needs the storage emulator, which the unit tier never starts.
"""

from __future__ import annotations

import base64
import contextlib
import json

import pytest

from dsr_export.adapters import rejections


@pytest.mark.azurite
def test_rejections_land_in_the_rejected_queue_which_is_created_on_first_use(
    azurite, tls_files, monkeypatch
):
    from azure.storage.queue import QueueClient

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files.ca_bundle)
    from azure.core.exceptions import ResourceNotFoundError

    reader = QueueClient.from_connection_string(
        azurite.connection_string, rejections.REJECTED_QUEUE
    )
    with contextlib.suppress(ResourceNotFoundError):
        reader.delete_queue()  # Azurite is shared by the session: start from no queue at all
    sink = rejections.QueueRejections(
        rejections.queue_client({"AzureWebJobsStorage": azurite.connection_string})
    )
    sink.record({"reason": "malformed", "messageId": "m-1"})  # the queue does not exist yet
    sink.record({"reason": "invalid", "messageId": "m-2"})
    texts = [m.content for m in reader.receive_messages(max_messages=10)]
    decoded = [json.loads(base64.b64decode(t)) for t in texts]
    assert [d["messageId"] for d in decoded] == ["m-1", "m-2"], "base64 JSON, like the intake"
