"""The error vocabulary: the shape of a DSR's error, its categories, and what each Graph answer
means for the DSR (wait and retry, or fail now with a fix to apply).

Configuration errors (the SAS, permissions, the token) will not heal by themselves: failing at
once, with the setting or permission to fix, beats retrying for a month. The shape below is the
one wire form of an error: in activity results, the orchestration's output, the status document
and the audit record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypedDict

from dsr_export.domain import pacing
from dsr_export.domain.redaction import redact, redact_personal

Subject = Literal["user", "submit", "poll"]
Category = Literal["configuration", "user", "operation", "service", "storage"]


class ErrorDoc(TypedDict, total=False):
    """A DSR's error as every document shows it (camelCase on the wire)."""

    code: str
    message: str
    category: Category
    hint: str
    setting: str
    status: int
    graphRequestId: str | None
    reasonCode: str
    reasonSha256: str
    clientRequestId: str | None


class CallbackRefused(ValueError):
    """The URL may not receive callbacks (scheme, host not allowed, credentials in it)."""


class GraphFailure(Protocol):
    """What the domain needs to know of a failed Graph call (the adapter's ``GraphError``)."""

    @property
    def status(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def transient(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...


#: Wait before retrying a transient failure that came without Retry-After.
TRANSIENT_WAIT_SECONDS: Final = pacing.TRANSIENT_WAIT_SECONDS

_SAS_HINT: Final = (
    "Graph refused the export container's SAS. The app mints a container service SAS with "
    "sp=acw over HTTPS; check EXPORT_SAS_MODE, EXPORT_STORAGE_BLOB_ENDPOINT (a StorageV2 account "
    "that supports append blobs) and, in stored-policy mode, EXPORT_STORAGE_ACCOUNT_KEY."
)
_HINTS: Final[dict[str, tuple[Category, str]]] = {
    "SharedAccessSignatureTokenInvalid": ("configuration", _SAS_HINT),
    "StorageLocationInvalid": ("configuration", _SAS_HINT),
    "StorageLocationNotServiceSAS": ("configuration", _SAS_HINT),
    "StorageLocationNotAzureBlob": ("configuration", _SAS_HINT),
    "StorageLocationShouldNotAllowListAccess": ("configuration", _SAS_HINT),
    "StorageLocationShouldNotAllowReadAccess": ("configuration", _SAS_HINT),
    "StorageLocationNeedsWriteAddPermissions": ("configuration", _SAS_HINT),
    "StorageLocationShouldSupportAppendBlobs": (
        "configuration",
        "The export account cannot hold append blobs: use a StorageV2 (general purpose v2) "
        "account for EXPORT_STORAGE_BLOB_ENDPOINT, not premium or page-blob-only storage.",
    ),
    "InvalidInput": ("user", "The user is not an Entra object id (GUID)."),
    "OperationNotFound": (
        "operation",
        "Graph no longer knows this export operation; the export's outcome is unknown. Check "
        "Azure portal > User privacy and send the DSR again under a new requestId if needed.",
    ),
    "ForeignLocation": (
        "configuration",
        "Graph answered with an address outside GRAPH_BASE_URL; check GRAPH_BASE_URL.",
    ),
}
_BY_STATUS: Final[dict[int, tuple[Category, str]]] = {
    401: (
        "configuration",
        "Graph refused the app's token. Check the managed identity (AZURE_CLIENT_ID) and that "
        "GRAPH_BASE_URL is the Graph endpoint of the identity's cloud.",
    ),
    403: (
        "configuration",
        "Graph refused for lack of permission. Grant the app's managed identity the Microsoft "
        "Graph application permissions User.Export.All (submit) and User.Read.All (polling, "
        "user lookup) with admin consent: see docs/deploy.md.",
    ),
}


_QUOTA_HINTS: Final[dict[Subject, str]] = {
    "submit": (
        "Graph refused on its documented export quota (1,000 exportPersonalData a day per "
        "tenant, 100 per user), which it answers without Retry-After; tried again in about an "
        "hour."
    ),
    "poll": (
        "Graph refused on its documented quota of 10,000 data policy operation requests an hour "
        "per tenant, which it answers without Retry-After; checked again in about an hour."
    ),
    "user": "",
}


def quota_refused(exc: GraphFailure, *, subject: Subject) -> bool:
    """Whether ``exc`` is Graph's answer to a spent quota: a 429 without Retry-After on the
    calls Microsoft documents quotas for (the submit, and every dataPolicyOperation request).

    Those answer 429 with no Retry-After and nothing else does (other throttling sends one),
    so its absence is the signal: wait for the quota (:data:`pacing.QUOTA_WAIT_SECONDS`), not
    a minute.
    """
    return exc.status == 429 and exc.retry_after is None and subject in ("submit", "poll")


def is_quota_refusal(error: ErrorDoc | None) -> bool:
    """Whether a step's error is the submit quota's refusal (:func:`quota_refused`), as the
    orchestrator sees it in the activity's result."""
    return bool(error) and (error or {}).get("hint") == _QUOTA_HINTS["submit"]


@dataclass(frozen=True)
class RetryDecision:
    """What a Graph failure means for its step: retry after ``retry_after_seconds``, or fail
    with ``error``."""

    retry: bool
    retry_after_seconds: int
    error: ErrorDoc


def classify(exc: GraphFailure, *, subject: Subject) -> RetryDecision:
    """Decide what ``exc`` means for the step that got it."""
    category, hint = _HINTS.get(exc.code) or _BY_STATUS.get(exc.status) or ("service", "")
    if exc.status == 404 and subject in ("user", "submit"):
        category, hint = "user", "No such user in this tenant."
    if exc.transient and exc.code not in _HINTS:
        category, hint = "service", "Graph is throttling or unavailable; retried later."
    quota = quota_refused(exc, subject=subject)
    if quota:
        hint = _QUOTA_HINTS[subject]
    error: ErrorDoc = {**exc.to_dict(), "category": category}  # type: ignore[typeddict-item]
    # Graph's free text may quote the user; the code, request ids and our hint never do.
    error["message"] = redact_personal(str(error.get("message", "")))
    if hint:
        error["hint"] = hint
    retry = exc.transient and exc.code not in _HINTS
    wait = int(exc.retry_after) if exc.retry_after else TRANSIENT_WAIT_SECONDS
    if quota:
        wait = pacing.QUOTA_WAIT_SECONDS
    return RetryDecision(retry=retry, retry_after_seconds=wait, error=error)


#: Graph's catch-all for a storage location it could not use, including one it could not reach.
STORAGE_LOCATION_INVALID: Final = "StorageLocationInvalid"


def storage_unreachable(graph_error: ErrorDoc, reason: str) -> ErrorDoc:
    """Graph's ``StorageLocationInvalid`` when the app could not reach the container either:
    an outage of the export account, not a refused SAS. The DSR waits and submits again into a
    fresh container; the error is shown meanwhile (and kept if the outage outlasts the waits)."""
    return {
        **graph_error,
        "category": "storage",
        "hint": (
            f"Graph could not use the export container and the app could not reach it either "
            f"({reason}): the export storage account is unavailable. The DSR waits and submits "
            "again into a fresh container, a bounded number of times (docs/operations.md)."
        ),
    }


def storage_unavailable(resubmits: int, last: ErrorDoc | None) -> ErrorDoc:
    """The error for a DSR whose submits kept failing because the export account did not
    answer, after ``resubmits`` waits and fresh containers."""
    return {
        "code": "ExportStorageUnavailable",
        "category": "storage",
        "message": (
            f"the export storage account did not answer Graph nor the app at {resubmits + 1} "
            f"submits over hours (last: {(last or {}).get('code', 'unknown')}); no export "
            "was started"
        ),
        "hint": (
            "Check the export account's health (Azure status, Resource health) and its network "
            "rules, then run the DSR again: POST /api/exports/{requestId}/retry."
        ),
    }


def submit_outcome_unknown(container: str) -> ErrorDoc:
    """The error for a container Graph has accepted before, when we hold no operation id.

    Submitting again would fail (StorageLocationAlreadyUsed) or, with a new container, start a
    second, untracked export of the person's data; the SAS is revoked instead.
    """
    return {
        "code": "SubmitOutcomeUnknown",
        "category": "operation",
        "message": (
            f"container {container} already holds RequestInfo.json: an earlier submit for "
            "this DSR reached Graph but its answer was lost. Not submitting again (that would "
            "start a duplicate export) and the SAS is revoked, so the lost export cannot write "
            "either. Send the DSR again under a new requestId."
        ),
    }


def never_posted(attempts: int) -> ErrorDoc:
    """The error for a DSR whose submits Graph took in (its receipt is in each container) but
    never turned into an export, each time by Graph's own word (OperationNotFound)."""
    return {
        "code": "SubmitNotPosted",
        "category": "service",
        "message": (
            f"Graph accepted {attempts} submits into fresh containers but posted none of them "
            "as an export (each operation unknown to Graph); no export of this person exists"
        ),
        "hint": "Graph's export service is failing; check its health, then send the DSR again.",
    }


def activity_failed(exc: BaseException) -> ErrorDoc:
    """The error for an activity that failed all its attempts (an unexpected exception)."""
    return {"code": "ActivityFailed", "category": "service", "message": _first_line(exc)}


class StorageUnavailableError(RuntimeError):
    """An activity's storage (the export or the evidence account) did not answer, the Azure
    SDK's own retries spent: raised by the activity wrapper in place of the SDK's error.

    The orchestrator tells it from any other failure by its name in the failure's text (what
    the Durable host hands back of an activity's exception), and where ending the DSR would
    cost more than waiting (Graph already exports) it waits the outage out on durable timers.
    """


#: Errors of a DSR that ended because storage stayed down for hours: its finalisation, which
#: needs the same storage, is not waited out again.
STORAGE_OUTAGE_CODES: Final = frozenset({"ExportStorageUnavailable", "StorageUnavailable"})


def is_storage_outage(exc: BaseException) -> bool:
    """Whether an activity failed because its storage did not answer (its last attempt)."""
    return StorageUnavailableError.__name__ in str(exc)


def storage_outlasted(step: str, waits: int, exc: BaseException, *, exporting: bool) -> ErrorDoc:
    """The error for a step whose storage stayed down through every wait (hours)."""
    hint = (
        "Check the export and evidence accounts' health (Azure status, Resource health) and "
        "their network rules; once they answer, POST /api/exports/{requestId}/retry"
    )
    if exporting:
        hint += (
            " resumes the export Graph already has (its container and operation): it never "
            "submits a second one while Graph runs or has completed the first"
        )
    return {
        "code": "StorageUnavailable",
        "category": "storage",
        "message": (
            f"storage did not answer step {step} through {waits} waits over hours: "
            f"{_first_line(exc)}"
        ),
        "hint": hint + " (docs/operations.md, storage outages).",
    }


def finalize_failed(exc: BaseException, intended: str) -> ErrorDoc:
    """The error for a finalisation that failed all its attempts.

    The DSR cannot claim ``intended`` (a manifest or a revoked SAS it could not confirm), so it
    ends failed, saying what it was about to record and what an operator should check.
    """
    return {
        "code": "FinalizeFailed",
        "category": "storage",
        "message": f"finishing the DSR as {intended} failed: {_first_line(exc)}",
        "hint": (
            "The export container could not be finalised (manifest, SAS revocation, audit "
            "record). Check the export account's availability and the app's access to it; the "
            "Graph SAS expires on its own at sasExpiresAt if it could not be revoked."
        ),
    }


def timed_out(days: int) -> ErrorDoc:
    """The error for an export Graph did not finish within the DSR's overall limit."""
    return {
        "code": "ExportTimedOut",
        "category": "operation",
        "message": f"Graph did not finish within {days} days",
    }


def gave_up_waiting(days: int, last: ErrorDoc | None) -> ErrorDoc:
    """The error for a DSR whose Graph calls kept being refused (throttled, unavailable) until
    its overall limit, before the export could even be submitted."""
    code = (last or {}).get("code", "unknown")
    return {
        "code": "ExportTimedOut",
        "category": "service",
        "message": f"Graph kept refusing ({code}) for {days} days before the export started",
        "hint": "Graph throttled or was unavailable the whole time; send the DSR again later.",
    }


def export_failed() -> ErrorDoc:
    """The error for an operation Graph itself reported as failed."""
    return {
        "code": "ExportFailed",
        "category": "service",
        "message": "Graph reported the export operation as failed",
    }


#: Why a DSR was cancelled, as the status shows it: the words stay in the ticket.
CANCEL_REASON_CODES: Final = frozenset({"withdrawn", "duplicate", "invalid_request", "other"})
CANCELLED_MESSAGE: Final = "cancelled on request"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


def cancel_event(reason: str, reason_code: str) -> dict[str, str]:
    """The ``cancel`` event's data: the reason's code and SHA-256, never its text (names, phone
    numbers and addresses in any spelling would otherwise reach every ``DSR.Read`` caller)."""
    return {"reasonCode": reason_code, "reasonSha256": sha256_text(reason)}


def sha256_text(text: str) -> str:
    """The SHA-256 of ``text`` (UTF-8): what the evidence and the status keep of a reason."""
    return hashlib.sha256(text.encode()).hexdigest()


def cancelled(data: object) -> ErrorDoc:
    """The error a cancelled DSR carries: the reason's code and hash (see
    :func:`cancel_event`). Older events and outputs carried the text: it is hashed here, so
    whatever the task hub holds, a status shows a code and a hash and never the words."""
    fields = data if isinstance(data, dict) else {}
    code = fields.get("reasonCode")
    digest = fields.get("reasonSha256")
    text = fields.get("reason") if "reason" in fields else fields.get("message")
    error: ErrorDoc = {
        "code": "Cancelled",
        "message": CANCELLED_MESSAGE,
        "reasonCode": code if isinstance(code, str) and code in CANCEL_REASON_CODES else "other",
    }
    if isinstance(digest, str) and _SHA256.fullmatch(digest):
        error["reasonSha256"] = digest
    elif isinstance(text, str) and text and text != CANCELLED_MESSAGE:
        error["reasonSha256"] = sha256_text(text)
    return error


def _first_line(exc: BaseException) -> str:
    text = redact_personal(redact(str(exc))).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
