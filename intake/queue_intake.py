"""The queue face: one JSON message per DSR on ``dsr-requests``, started like an HTTP request.

A message that can never succeed (malformed, invalid, a requestId taken by another user) is
acknowledged on its first delivery and recorded in ``dsr-requests-rejected`` plus a structured
warning: retrying it five times would change nothing. Anything else that goes wrong (the task
hub unreachable, the rejection record not written) raises, so the host retries and finally
moves the message to ``dsr-requests-poison``; the last attempt logs why, with the message id.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.adapters.rejections import REJECTED_QUEUE
from dsr_export.domain.callers import Caller
from dsr_export.domain.logs import log_event
from dsr_export.domain.redaction import redact
from dsr_export.domain.request import (
    FieldError,
    InvalidRequest,
    decode_body,
    validate_request_id,
)
from intake.service import Admission, start_or_get

bp = df.Blueprint()

QUEUE: Final = "dsr-requests"
#: Mirrors host.json ``extensions.queues.maxDequeueCount``: the attempt after which the host
#: gives the message up to the poison queue.
MAX_DEQUEUE_COUNT: Final = 5
#: Whoever can write to host storage can drop a message: the queue is recorded as the submitter.
QUEUE_CALLER: Final = Caller("queue", QUEUE, frozenset())


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE, connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def intake_dsr_message(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Start (or find) the DSR a message asks for; record a refusal instead of retrying it."""
    try:
        await _handle(msg, client)
    except Exception as exc:
        if (msg.dequeue_count or 0) >= MAX_DEQUEUE_COUNT:
            log_event(
                "dsr_request_poisoned",
                level=logging.ERROR,
                request_id=_message_request_id(msg),
                message_id=msg.id,
                dequeue_count=msg.dequeue_count,
                queue=f"{QUEUE}-poison",
                reason=_first_line(exc),
            )
        raise


async def _handle(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    body = msg.get_body() or b""
    try:
        payload = decode_body(body)
    except InvalidRequest as exc:
        _reject(msg, "malformed", "the message is not a JSON DSR request", exc.errors, None)
        return
    outcome = await start_or_get(
        composition.task_hub(client),
        payload,
        now=composition.now(),
        source="queue",
        caller=QUEUE_CALLER,
    )
    if outcome.verdict is Admission.INVALID:
        _reject(msg, "invalid", outcome.detail, outcome.errors, _request_id(payload))
    elif outcome.verdict is Admission.CONFLICT:
        _reject(msg, "conflict", outcome.detail, outcome.errors, outcome.request_id)
    elif outcome.verdict is Admission.UNKNOWN_TENANT:
        error = FieldError("/tenantId", "is not a tenant this service serves")
        _reject(msg, "invalid", "the tenant is not registered", [error], _request_id(payload))


def _reject(
    msg: func.QueueMessage,
    reason: str,
    detail: str,
    errors: list[FieldError],
    request_id: str | None,
) -> None:
    record: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "errors": [{"pointer": e.pointer, "detail": e.detail} for e in errors],
        "requestId": request_id,
        "messageId": msg.id,
        "insertedAt": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "dequeueCount": msg.dequeue_count,
        "rejectedAt": composition.now().isoformat(),
        "queue": QUEUE,
    }
    composition.rejections().record(record)
    log_event(
        "dsr_request_rejected",
        level=logging.WARNING,
        message_id=msg.id,
        request_id=request_id,
        reason=reason,
        fields=",".join(e.pointer or "/" for e in errors),
        recorded_in=REJECTED_QUEUE,
    )


def _request_id(payload: object) -> str | None:
    """The requestId when it is a valid one: it points the operator at the ticket."""
    if not isinstance(payload, dict):
        return None
    try:
        return validate_request_id(payload.get("requestId"))
    except InvalidRequest:
        return None


def _message_request_id(msg: func.QueueMessage) -> str | None:
    """The message's valid requestId, if it has one: the poisoned line then names the DSR."""
    try:
        return _request_id(decode_body(msg.get_body() or b""))
    except InvalidRequest:
        return None


def _first_line(exc: BaseException) -> str:
    lines = redact(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
