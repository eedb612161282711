"""Activity results for replay tests to answer with, typed by the step contract.

Each builds the step's result (:mod:`dsr_export.domain.steps`) and returns its wire form, the
JSON object :meth:`tests.replay.Driver.complete` records as the activity's result. The defaults
are one plain export: operation ``op-1``, accepted 30 seconds after the 09:00 start.
"""

from __future__ import annotations

from typing import Any

from dsr_export.domain import steps

OPERATION_ID = "op-1"
OPERATION_URL = f"https://graph.microsoft.com/beta/dataPolicyOperations/{OPERATION_ID}"
#: What finalisation reports of a SAS it revoked.
REVOKED = {"revoked": True, "expiresAt": None}
#: A callback the receiver took (204).
DELIVERED = steps.CallbackDelivery(delivered=True, status=204).to_dict()


def prepared(
    container: str = "c", *, settle_seconds: int = 30, request_info_exists: bool = False
) -> dict[str, Any]:
    """``prepare_container`` made ``container``; its access policy settles in that time."""
    return steps.ContainerPrepared(
        container=container, settle_seconds=settle_seconds, request_info_exists=request_info_exists
    ).to_dict()


def accepted(retry_after: int = 60) -> dict[str, Any]:
    """Graph accepted the export and asks for the first poll after ``retry_after`` seconds."""
    return steps.ExportSubmitted(
        outcome=steps.Outcome.ACCEPTED,
        operation_id=OPERATION_ID,
        operation_url=OPERATION_URL,
        retry_after_seconds=retry_after,
        submitted_at="2026-03-01T09:00:30+00:00",
        sas_expires_at="2026-04-30T09:00:00+00:00",
    ).to_dict()


def checked(status: str, progress: float | None = None) -> dict[str, Any]:
    """One poll: the operation's status (and progress) as Graph reported them."""
    return steps.ExportChecked(status=status, progress=progress).to_dict()


def finalized(manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Finalisation wrote ``manifest`` (None: no manifest) and revoked the SAS."""
    return steps.ExportFinalized(manifest=manifest, sas=REVOKED).to_dict()
