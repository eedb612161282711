"""``python -m devhost queue send|peek``: a queue producer's view of the running offline host.

A ticketing system may send one message per DSR to ``dsr-requests`` instead of calling the
HTTP API. ``send`` does what such a producer does against the host running on a state
directory: it reads that host's ``endpoints.json`` for the storage connection, encodes the body
the way the host's ``host.json`` says (``messageEncoding``, base64 by default) and puts it on
the queue, created if need be. The body is sent as it is, valid or not: what the app does with
a malformed message is worth seeing too. ``peek`` shows what lies on a queue (the rejected and
poison queues, say) without taking it off.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.queue import QueueClient

from devhost._state import read_json
from devhost.stack import ENDPOINTS_FILE

__all__ = ["DEFAULT_QUEUE", "QueueToolError", "peek_messages", "running_host", "send_message"]

DEFAULT_QUEUE = "dsr-requests"


class QueueToolError(RuntimeError):
    """The message could not be sent or read; the text says why and what to do."""


def running_host(state: Path) -> dict[str, Any]:
    """The ``endpoints.json`` of the host running on ``state``."""
    path = state / ENDPOINTS_FILE
    data = read_json(path, what="the running host's endpoints")
    if data is None:
        raise QueueToolError(
            f"no host is running on {state}: {path} is missing. Start one with `make serve` "
            f"or `python -m devhost serve --state {state}`; it writes that file once ready."
        )
    if not isinstance(data, dict) or not data.get("storageConnection"):
        raise QueueToolError(f"{path} names no storage connection")
    return data


def send_message(state: Path, body: bytes, queue: str = DEFAULT_QUEUE, *, raw: bool = False) -> str:
    """Put ``body`` on ``queue`` of the host running on ``state``; returns the message id.

    ``raw`` sends the text unencoded whatever host.json says, as a producer that forgot the
    base64 does (the host then moves it to the poison queue).
    """
    host = running_host(state)
    encoding = "none" if raw else str(host.get("queueMessageEncoding") or "base64")
    if encoding == "base64":
        content = base64.b64encode(body).decode("ascii")
    else:
        try:
            content = body.decode("utf-8")
        except UnicodeDecodeError:
            raise QueueToolError(
                "the body is not UTF-8 text, which a message sent unencoded must be"
            ) from None
    with _client(host, queue) as client, _storage_errors(host, state):
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        sent = client.send_message(content)
    return str(sent.id)


def peek_messages(state: Path, queue: str = DEFAULT_QUEUE, count: int = 32) -> list[str]:
    """The bodies on ``queue`` (up to 32), decoded as the host would; nothing is taken off."""
    host = running_host(state)
    encoding = str(host.get("queueMessageEncoding") or "base64")
    with _client(host, queue) as client, _storage_errors(host, state):
        try:
            messages = list(client.peek_messages(max_messages=max(1, min(count, 32))))
        except ResourceNotFoundError:
            return []
    return [_decoded(str(m.content or ""), encoding) for m in messages]


def _decoded(content: str, encoding: str) -> str:
    if encoding != "base64":
        return content
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return content  # not base64 (a poisoned message, say): shown as it lies there


def _client(host: dict[str, Any], queue: str) -> QueueClient:
    return QueueClient.from_connection_string(
        str(host["storageConnection"]),
        queue,
        connection_verify=host.get("caBundle") or True,
        retry_total=0,  # a person is waiting: fail at once, say why
        connection_timeout=5,
    )


@contextlib.contextmanager
def _storage_errors(host: dict[str, Any], state: Path) -> Iterator[None]:
    try:
        yield
    except HttpResponseError as error:
        reason = (error.message or str(error.reason)).splitlines()[0]
        raise QueueToolError(f"the queue service refused the request: {reason}") from None
    except AzureError as error:
        raise QueueToolError(
            f"could not reach the host's queue service ({type(error).__name__}): is the host "
            f"on {state} still running? (pid {host.get('pid')})"
        ) from None
