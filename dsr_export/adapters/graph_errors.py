"""A failed Graph call, as the rest of the app sees it.

Kept apart from the client so that activities can catch it without importing ``requests`` at
cold start. It satisfies the domain's :class:`~dsr_export.domain.errors.GraphFailure`, which is
all the domain's classification needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GraphError(Exception):
    """A Graph failure, classified. Never carries a token, a SAS or a response body."""

    status: int
    code: str
    message: str
    graph_request_id: str | None = None
    client_request_id: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"Graph {self.status} {self.code}: {self.message}"

    @property
    def transient(self) -> bool:
        """Worth trying again later: throttling, service trouble, or no answer at all."""
        return self.status in (0, 408, 429) or self.status >= 500

    def to_dict(self) -> dict[str, Any]:
        """The non-secret facts, for activity results and the ticket."""
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "graphRequestId": self.graph_request_id,
            "clientRequestId": self.client_request_id,
        }
