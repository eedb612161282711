"""Failures only an operator can fix: a setting, or the export account refusing the app.

Such a failure will fail every retry; the activity turns it into a ``failed`` result naming the
fix instead of raising (which the orchestrator would retry five times for a generic message).
The Azure SDK's exception types are imported when a failure is judged, not at cold start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Final

from dsr_export.domain.errors import ErrorDoc
from dsr_export.domain.logs import log_event
from dsr_export.domain.redaction import redact
from dsr_export.settings import SettingsError

_STORAGE_HINT: Final = (
    "The export storage account refused the app. In stored-policy mode check "
    "EXPORT_STORAGE_ACCOUNT_KEY (a rotated key?); in user-delegation mode grant the app's "
    "managed identity Storage Blob Data Contributor on the export account (docs/deploy.md)."
)

#: Entra's answers when the app has no service principal (never consented, or consent revoked,
#: AADSTS700016), lacks consent (AADSTS65001), or was disabled there (AADSTS7000112).
CONSENT_CODES: Final = ("AADSTS700016", "AADSTS65001", "AADSTS7000112")


class TenantConsentMissing(Exception):
    """The tenant's administrator has not granted the app access (or revoked it): no Graph
    token can be had there until they consent again. Says what, never a token's content."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id} has not granted the app access (admin consent)")
        self.tenant_id = tenant_id


def consent_missing(exc: BaseException) -> bool:
    """Whether a token refusal says the tenant has not consented (one of :data:`CONSENT_CODES`)."""
    return any(code in str(exc) for code in CONSENT_CODES)


def setup_error(exc: BaseException) -> ErrorDoc | None:
    """The error for a failure that only an operator can fix, or None for anything else."""
    if isinstance(exc, TenantConsentMissing):
        return {
            "code": "TenantConsentMissing",
            "category": "configuration",
            "message": str(exc),
            "hint": (
                f"An administrator of tenant {exc.tenant_id} must grant the app admin consent: "
                f"send them the consent link (GET /api/tenants/{exc.tenant_id}/consent-link, "
                f"dsrctl tenants consent-link {exc.tenant_id}), then retry the DSR "
                "(POST /api/exports/{requestId}/retry). docs/msp.md, onboarding."
            ),
        }
    if isinstance(exc, SettingsError):
        return {
            "code": "Misconfigured",
            "category": "configuration",
            "message": str(exc),
            "setting": exc.setting,
        }
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

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


def storage_unanswered(exc: BaseException) -> str | None:
    """Why storage did not answer (``connection``, ``timeout``, ``busy``), or None when it did.

    An outage, not a refusal: no connection, no reply in time, or the service saying it is
    unavailable (5xx, 408, 429). A 403 or 404 is an answer; :func:`setup_error` judges those.
    """
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError):
        return "connection"
    if isinstance(exc, ServiceResponseError):
        return "timeout"
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status >= 500 or status in (408, 429):
            return "busy"
    return None


#: The DSR and step a storage call is made for (set by the activity wrapper), for the log.
_STEP: ContextVar[tuple[str | None, str | None]] = ContextVar("storage_step", default=(None, None))


@contextlib.contextmanager
def in_step(request_id: object, step: str) -> Iterator[None]:
    """Storage calls made inside are logged, when they are retried, as this DSR's and step's."""
    token = _STEP.set((request_id if isinstance(request_id, str) else None, step))
    try:
        yield
    finally:
        _STEP.reset(token)


def logged_retry(account: str) -> Any:
    """The Azure Storage SDK's own retry policy (ExponentialRetry, its defaults: four tries
    over about 84 s), which also says in the log each time it waits: without it a storage
    outage ridden out by the SDK leaves no trace of what the app waited for."""
    from azure.storage.blob import ExponentialRetry

    class _LoggedRetry(ExponentialRetry):
        def sleep(self, settings: dict[str, Any], transport: Any) -> None:
            backoff = self.get_backoff_time(settings)
            if not backoff or backoff < 0:
                return
            history = settings.get("history") or []
            last = history[-1] if history else None
            error = getattr(last, "error", None)
            response = getattr(last, "http_response", None)
            if error is not None:
                reason = storage_unanswered(error) or type(error).__name__
            else:
                reason = f"busy ({getattr(response, 'status_code', '?')})"
            request_id, step = _STEP.get()
            log_event(
                "storage_retry",
                level=logging.WARNING,
                request_id=request_id,
                step=step,
                account=account,
                reason=reason,
                attempt=settings.get("count"),
                retry_in_seconds=round(backoff, 1),
            )
            transport.sleep(backoff)

    return _LoggedRetry()
