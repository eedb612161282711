"""Old messages out of the queues an operator reads: the poison queue and the rejected queue.

A message the host gives up on lands in ``dsr-requests-poison`` with its whole body, the data
subject's UPN or e-mail included, for the queue's default time to live (seven days); a
rejection record (``dsr-requests-rejected``) lives 30 days. Neither is ever read by the app
again. So the retention run deletes what is older than ``QUEUE_RETENTION_DAYS``.

A queue message can be deleted only after receiving it (its pop receipt), which hides it for
a while: a message that is kept is made visible again at once, so an operator peeking at the
queue sees it. Queues hand out their oldest messages first (best effort), so the run stops at
the first batch that holds nothing old enough.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

#: Where the Functions host moves a request message after its last attempt.
POISON_QUEUE: Final = "dsr-requests-poison"
#: A queue hands out at most 32 messages at once.
BATCH: Final = 32
#: Seconds a received message stays hidden before it is deleted or made visible again.
HOLD_SECONDS: Final = 60
#: A safety bound per run: 200 batches of 32 is more than any tenant poisons in a period.
MAX_BATCHES: Final = 200


def clear_older(client: QueueClient, cutoff: datetime) -> int:
    """Delete the messages inserted before ``cutoff``; return how many were deleted.

    A missing queue (never used) has nothing to clear. The message bodies are never read
    (a poisoned body need not even be valid base64).
    """
    from azure.core.exceptions import ResourceNotFoundError

    deleted = 0
    try:
        for _ in range(MAX_BATCHES):
            batch = list(
                client.receive_messages(
                    messages_per_page=BATCH, max_messages=BATCH, visibility_timeout=HOLD_SECONDS
                )
            )
            old = 0
            for message in batch:
                if message.inserted_on is not None and message.inserted_on < cutoff:
                    client.delete_message(message)
                    old += 1
                else:
                    client.update_message(message, visibility_timeout=0)
            deleted += old
            if not batch or old == 0:
                break
    except ResourceNotFoundError:
        return deleted
    return deleted
