"""A small Microsoft Graph client for exportPersonalData and its dataPolicyOperation.

The contract it relies on is written down in docs/graph-contract.md. A plain HTTP client rather
than the Graph SDK: the beta SDK drops the ``Location`` header that
carries the operation id (see docs/architecture.md). Short transient failures are retried here
with urllib3's ``Retry``; a ``Retry-After`` longer than :data:`INLINE_WAIT_MAX_SECONDS` is not
slept on in a worker but handed back (:class:`GraphError` with ``retry_after``) so the
orchestrator waits on a durable timer instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from dsr_export.adapters.graph_errors import GraphError
from dsr_export.adapters.outbound import UrlRefused, same_origin
from dsr_export.domain.redaction import redact, redact_personal, strip_query
from dsr_export.settings import GraphSettings

GRAPH_SCOPE_SUFFIX: Final = "/.default"
#: Default wait before the first poll when the service sends no Retry-After.
DEFAULT_RETRY_AFTER_SECONDS: Final = 60
#: Longest Retry-After we sleep on inside an activity; longer waits become durable timers.
INLINE_WAIT_MAX_SECONDS: Final = 30.0


class TokenProvider(Protocol):
    """What the client needs of an ``azure.core.credentials.TokenCredential``."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class SubmittedExport:
    """What a 202 from exportPersonalData tells us."""

    operation_id: str
    operation_url: str
    retry_after_seconds: int


@dataclass(frozen=True)
class DataPolicyOperation:
    """The fields of a dataPolicyOperation that the orchestration uses."""

    id: str
    status: str
    progress: float | None
    submitted_at: datetime | None
    completed_at: datetime | None
    user_id: str | None = None


class _GraphRetry(Retry):
    """urllib3 ``Retry`` that refuses to sleep on a long Retry-After, or to repeat a 429 that
    has none.

    A 429 without Retry-After is how Graph says a documented quota is spent (exportPersonalData
    a day, dataPolicyOperation an hour): trying again in seconds is a wasted call that may
    count against the quota, so it goes back at once, for the orchestrator to wait on the
    quota (``errors.classify``).

    Raising ``MaxRetryError`` from ``increment`` makes urllib3 return the throttled response
    (``raise_on_status=False``), which the client turns into a :class:`GraphError` carrying
    ``retry_after`` for the orchestrator.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is None and response.status == 429:
                raise MaxRetryError(_pool, url or "", None)  # type: ignore[arg-type]
            if wait is not None and wait > INLINE_WAIT_MAX_SECONDS:
                raise MaxRetryError(_pool, url or "", None)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _session(retry: Retry) -> requests.Session:
    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _read_retry(backoff_factor: float) -> Retry:
    """GETs are safe to repeat: retry connection, read and 429/5xx failures."""
    return _GraphRetry(
        total=4,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_factor / 2,
        backoff_max=INLINE_WAIT_MAX_SECONDS,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _submit_retry(backoff_factor: float) -> Retry:
    """exportPersonalData is not idempotent: retry only what the service certainly refused.

    A connection that never opened, or a 429/503 (throttled before any work), is safe to
    repeat. A read timeout or another 5xx may hide a submit that went through; the activity
    decides about those, after checking the container for ``RequestInfo.json``.
    """
    return _GraphRetry(
        total=4,
        connect=3,
        read=0,
        other=0,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_factor / 2,
        backoff_max=INLINE_WAIT_MAX_SECONDS,
        status_forcelist=(429, 503),
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class GraphClient:
    """exportPersonalData, dataPolicyOperations and user lookup, with the bearer token pinned
    to the configured Graph host."""

    def __init__(
        self, settings: GraphSettings, credential: TokenProvider, *, backoff_factor: float = 2.0
    ) -> None:
        """``backoff_factor`` spaces inline retries (0 in tests); Retry-After always wins."""
        self._settings = settings
        self._credential = credential
        self._reads = _session(_read_retry(backoff_factor))
        self._submits = _session(_submit_retry(backoff_factor))

    def submit_export(self, user_id: str, storage_location: str) -> SubmittedExport:
        """POST exportPersonalData. ``storage_location`` (the SAS URL) goes in the body only."""
        url = self._url(f"users/{quote(user_id, safe='')}/exportPersonalData")
        response = self._send(
            self._submits, "POST", url, json={"storageLocation": storage_location}
        )
        if response.status_code != 202:
            raise _error_from(response)
        location = response.headers.get("Location") or response.headers.get("Operation-Location")
        if not location:
            raise GraphError(
                502, "MissingLocation", "Graph accepted the export but sent no Location header"
            )
        location = self._check_origin(location)
        operation_id = strip_query(location).rstrip("/").rsplit("/", 1)[-1]
        return SubmittedExport(
            operation_id=operation_id,
            operation_url=location,
            retry_after_seconds=_retry_after(response) or DEFAULT_RETRY_AFTER_SECONDS,
        )

    def get_operation(self, operation_url: str) -> DataPolicyOperation:
        """GET the dataPolicyOperation at the URL Graph gave us.

        The URL comes back from the task hub, which anyone who can write host storage can
        edit: it is judged again before every poll (in :meth:`_send`).
        """
        response = self._send(self._reads, "GET", operation_url)
        if response.status_code != 200:
            raise _error_from(response)
        body = response.json()
        return DataPolicyOperation(
            id=str(body.get("id", "")),
            status=str(body.get("status") or "unknownFutureValue"),
            progress=_number(body.get("progress")),
            submitted_at=_timestamp(body.get("submittedDateTime")),
            completed_at=_timestamp(body.get("completedDateTime")),
            user_id=str(body["userId"]).lower() if body.get("userId") else None,
        )

    def operation_url(self, operation_id: str) -> str:
        """Where Graph answers for an operation id (``dataPolicyOperations/{id}``)."""
        return self._url(f"dataPolicyOperations/{quote(operation_id, safe='')}")

    def resolve_user_id(self, user_principal_name: str) -> str:
        """The object id behind a UPN (exportPersonalData accepts object ids only)."""
        url = (
            f"{self._settings.base_url}/v1.0/users/{quote(user_principal_name, safe='@')}"
            "?$select=id"
        )
        response = self._send(self._reads, "GET", url)
        if response.status_code != 200:
            raise _error_from(response)
        return str(response.json()["id"])

    def _url(self, path: str) -> str:
        return f"{self._settings.base_url}/{self._settings.api_version}/{path}"

    def _check_origin(self, url: str) -> str:
        """The URL to send, if it is on the configured Graph origin; else ForeignLocation.

        Judged by urllib3's parser, which is what sends the request (see
        :mod:`~dsr_export.adapters.outbound`): the token goes to GRAPH_BASE_URL's scheme, host
        and port and nowhere else, whatever a ``Location`` header or the task hub says.
        """
        try:
            return same_origin(url, self._settings.base_url).url
        except UrlRefused as exc:
            raise GraphError(
                502,
                "ForeignLocation",
                f"Graph pointed at an address that {exc}, so not at the configured "
                "GRAPH_BASE_URL; the token is only ever sent there",
            ) from None

    def _send(
        self, session: requests.Session, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        client_request_id = str(uuid.uuid4())
        headers = {"client-request-id": client_request_id, "return-client-request-id": "true"}
        prepared = session.prepare_request(
            requests.Request(method, self._check_origin(url), headers=headers, **kwargs)
        )
        # The prepared URL is what goes on the wire: judged again, then the token is added.
        self._check_origin(prepared.url or "")
        scope = self._settings.base_url + GRAPH_SCOPE_SUFFIX
        prepared.headers["Authorization"] = f"Bearer {self._credential.get_token(scope).token}"
        transport = session.merge_environment_settings(prepared.url, {}, None, None, None)
        try:
            return session.send(
                prepared,
                timeout=self._settings.timeout_seconds,
                allow_redirects=False,
                **transport,
            )
        except requests.RequestException as exc:
            # The text of a requests exception names the URL and the socket error, never the
            # body; redact anyway, it ends up in task hub history.
            raise GraphError(
                0,
                "NoResponse",
                redact(f"{type(exc).__name__} talking to Graph: {exc}"),
                client_request_id=client_request_id,
            ) from None


def _error_from(response: requests.Response) -> GraphError:
    code, message = f"Http{response.status_code}", response.reason or "error"
    request_id = response.headers.get("request-id")
    client_request_id = response.headers.get("client-request-id")
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        inner = error.get("innerError") or {}
        if isinstance(inner, dict):
            request_id = inner.get("request-id") or request_id
            client_request_id = inner.get("client-request-id") or client_request_id
    return GraphError(
        status=response.status_code,
        code=code,
        message=redact_personal(redact(message)),
        graph_request_id=request_id,
        client_request_id=client_request_id,
        retry_after=_retry_after(response),
    )


def _retry_after(response: requests.Response) -> int | None:
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return int(raw)
    if raw:
        try:
            return int(Retry().parse_retry_after(raw))  # HTTP-date form
        except InvalidHeader:
            return None  # unreadable: the caller's default wait applies
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%"))
        except ValueError:
            return None
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
