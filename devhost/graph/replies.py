"""Every Graph answer has one shape, because clients act on it rather than on the status alone.

An error is ``{"error": {"code", "message", "innerError": {...}}}``: the app branches on ``code``
(``StorageLocationAlreadyUsed`` is not ``StorageLocationInvalid``) and on ``Retry-After``, and
support asks for the ``request-id``. Routes raise ``GraphError`` and the router renders the body
once, so no route can answer in another shape.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from devhost.https_server import Reply as Reply  # every route answers one


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_reply(status: int, code: str, message: str) -> Reply:
    return Reply(status, error=(code, message))


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def error_body(
    error: tuple[str, str], request_id: str, client_request_id: str | None, now: datetime
) -> bytes:
    code, message = error
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": iso(now),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }
    return json.dumps(body).encode()


def iso(moment: datetime | None) -> str | None:
    """Graph's timestamps: UTC, with ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
