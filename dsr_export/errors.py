"""What a Graph error means for a DSR: wait and retry, or fail now with a fix to apply.

Configuration errors (the SAS, permissions, the token) will not heal by themselves: failing at
once, with the setting or permission to fix, beats retrying for a month.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from dsr_export.graph import GraphError
from dsr_export.redaction import redact
from dsr_export.settings import SettingsError

Subject = Literal["user", "submit", "poll"]

#: Wait before retrying a transient failure that came without Retry-After.
TRANSIENT_WAIT_SECONDS: Final = 60

_SAS_HINT: Final = (
    "Graph refused the export container's SAS. The app mints a container service SAS with "
    "sp=acw over HTTPS; check EXPORT_SAS_MODE, EXPORT_STORAGE_BLOB_ENDPOINT (a StorageV2 account "
    "that supports append blobs) and, in stored-policy mode, EXPORT_STORAGE_ACCOUNT_KEY."
)
_HINTS: Final[dict[str, tuple[str, str]]] = {
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
_BY_STATUS: Final[dict[int, tuple[str, str]]] = {
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


@dataclass(frozen=True)
class Verdict:
    """Retry after ``retry_after_seconds``, or fail with ``error``."""

    retry: bool
    retry_after_seconds: int
    error: dict[str, Any]


def classify(exc: GraphError, *, subject: Subject) -> Verdict:
    """Decide what ``exc`` means for the step that got it."""
    category, hint = _HINTS.get(exc.code) or _BY_STATUS.get(exc.status) or ("service", "")
    if exc.status == 404 and subject in ("user", "submit"):
        category, hint = "user", "No such user in this tenant."
    if exc.transient and exc.code not in _HINTS:
        category, hint = "service", "Graph is throttling or unavailable; retried later."
    error = {**exc.to_dict(), "category": category}
    if hint:
        error["hint"] = hint
    retry = exc.transient and exc.code not in _HINTS
    wait = int(exc.retry_after) if exc.retry_after else TRANSIENT_WAIT_SECONDS
    return Verdict(retry=retry, retry_after_seconds=wait, error=error)


_STORAGE_HINT: Final = (
    "The export storage account refused the app. In stored-policy mode check "
    "EXPORT_STORAGE_ACCOUNT_KEY (a rotated key?); in user-delegation mode grant the app's "
    "managed identity Storage Blob Data Contributor on the export account (docs/deploy.md)."
)


def setup_error(exc: BaseException) -> dict[str, Any] | None:
    """The error for a failure that only an operator can fix, or None for anything else.

    A missing setting or a storage account that refuses the app will fail every retry; failing
    the DSR at once with the fix beats five retries and a generic message.
    """
    if isinstance(exc, SettingsError):
        return {
            "code": "Misconfigured",
            "category": "configuration",
            "message": str(exc),
            "setting": exc.setting,
        }
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and status == 403
    ):
        code = getattr(exc, "error_code", None) or "AuthorizationFailure"
        return {
            "code": "StorageAccessDenied",
            "category": "configuration",
            "message": redact(f"export storage answered {status}: {code}"),
            "hint": _STORAGE_HINT,
        }
    return None


def submit_outcome_unknown(container: str) -> dict[str, Any]:
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
