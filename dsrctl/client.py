"""The HTTP API as the CLI sees it: one method per route, authentication, refusals read.

Every answer that is not the route's success becomes an :class:`ApiError`: the app's own
refusals are RFC 9457 problem documents naming each field at fault (``errors`` with a JSON
``pointer``, or a ``field``); the Functions host's refusals come before the app with empty
bodies (401 without a valid key, 404 for an unknown route), and are named from their status.
A service that cannot be reached is a :class:`NetworkError`, with a message free of secrets.

Redirects are never followed. Every request carries the function key and/or a bearer token;
``requests`` drops ``Authorization`` on a redirect to another host but sends any other header
(``x-functions-key``) on to wherever the ``Location`` points. The API itself never redirects,
so a redirect means ``--url`` is not the API (``http://`` to an app that is HTTPS-only, App
Service authentication sending a browser to sign in, a proxy or a look-alike host): refusing it,
with where it pointed, tells the operator what to fix, and no credential leaves for an origin
they did not name. Dropping the credentials and following instead would only turn a clear
refusal into a confusing 401 from the other end.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urljoin

import requests

from dsr_export.domain.redaction import redact, strip_query
from dsrctl import __version__

#: What the CLI calls itself on the wire.
USER_AGENT: Final = f"dsrctl/{__version__}"
PROBLEM_TYPE: Final = "application/problem+json"
#: Renew an Entra token this long before it expires.
_TOKEN_MARGIN: Final = 120.0
_ERRNO: Final = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_URL: Final = re.compile(r"https?://[^\s'\"<>]+")

#: What the Functions host means by its bare refusals (no body, no problem document).
HOST_REFUSALS: Final[Mapping[int, str]] = {
    401: "no valid function key or token (give --function-key, --token or --scope)",
    403: "forbidden by the platform",
    404: "no such route on this service (check --url; is this route deployed yet?)",
    413: "the request is too large",
    414: "the request line is too long",
    429: "too many requests: try again later",
    500: "the service failed (internal error)",
    502: "bad gateway",
    503: "the service is unavailable: try again later",
    504: "the service did not answer in time",
}


@dataclass(frozen=True)
class FieldProblem:
    """One field at fault: ``field`` is the JSON pointer without its slash (``user``)."""

    field: str
    detail: str


@dataclass
class ApiError(Exception):
    """The API refused: ``status``, the problem's ``title`` and ``detail``, each field at fault."""

    status: int
    title: str
    detail: str = ""
    errors: list[FieldProblem] = field(default_factory=list)
    #: The problem document as sent (None for a bare refusal).
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        return f"{text}: {self.detail}" if self.detail else text

    def lines(self) -> list[str]:
        """The refusal in one line, then one line per field at fault."""
        return [str(self), *(f"  {e.field}: {e.detail}" for e in self.errors)]

    def reasons(self) -> list[FieldProblem]:
        """Each field at fault, or the refusal itself when it names none."""
        return self.errors or [FieldProblem("(request)", str(self))]


class NetworkError(Exception):
    """The service could not be reached or did not answer (the message holds no secret)."""


class CredentialError(Exception):
    """No Entra token could be had for the scope (the message says why)."""


def field_name(pointer: object) -> str:
    """A JSON pointer as a field name: ``/user`` -> ``user``, ``""`` -> ``(body)``."""
    text = str(pointer or "").strip()
    if text.startswith("/"):
        text = text[1:].replace("/", ".")
    return (text.replace("~1", "/").replace("~0", "~")) or "(body)"


def problem_of(status: int, content_type: str, text: str, payload: object) -> ApiError:
    """The refusal an answer carries: a problem document, or the host's bare status."""
    if isinstance(payload, dict) and (
        content_type.startswith(PROBLEM_TYPE) or "title" in payload or "errors" in payload
    ):
        errors = []
        for item in payload.get("errors") or []:
            if isinstance(item, dict):
                where = item.get("pointer", item.get("field", ""))
                detail = item.get("detail") or item.get("message") or ""
                errors.append(FieldProblem(field_name(where), scrub(str(detail))))
            else:
                errors.append(FieldProblem("(body)", scrub(str(item))))
        title = str(payload.get("title") or HOST_REFUSALS.get(status, "refused"))
        return ApiError(
            status, scrub(title), scrub(str(payload.get("detail") or "")), errors, payload
        )
    detail = HOST_REFUSALS.get(status, "")
    if not detail and text.strip():
        detail = scrub(text.strip().splitlines()[0][:200])
    return ApiError(status, _reason_phrase(status), detail)


def _reason_phrase(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def scrub(text: str) -> str:
    """``text`` without SAS signatures, keys, bearer tokens or URL query strings."""
    return _URL.sub(lambda m: strip_query(m.group(0)), redact(text))


def network_message(base_url: str, exc: BaseException) -> str:
    """Why ``base_url`` could not be reached, in a few words (never the URL's query)."""
    where = strip_query(base_url)
    if isinstance(exc, requests.Timeout):
        return f"{where} did not answer in time"
    found = _ERRNO.search(str(exc))
    if found:
        return f"cannot reach {where}: {found.group(1).strip()}"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"cannot reach {where}: TLS failed (a self-signed CA? give --ca-bundle)"
    return f"cannot reach {where}: {type(exc).__name__}"


def redirect_refusal(status: int, url: str, headers: Mapping[str, str]) -> ApiError:
    """A redirect, refused: where it pointed (no query: it may carry anything), and why."""
    location = headers.get("location") or ""
    target = scrub(strip_query(urljoin(url, location))) if location else "(no Location)"
    return ApiError(
        status,
        "Redirect not followed",
        f"the service redirects to {target}; dsrctl follows no redirect, so that the function "
        "key and token go only to --url (check --url: https://? the app's own host name?)",
    )


class TokenSource:
    """Bearer tokens: a raw one (``--token``), or Entra's for a scope (``--scope``) through
    azure-identity's DefaultAzureCredential, renewed before it expires."""

    def __init__(self, *, token: str | None = None, scope: str | None = None) -> None:
        self._raw = token.strip() if token else None
        self._scope = scope
        self._credential: Any = None
        self._cached: tuple[str, float] | None = None

    def __bool__(self) -> bool:
        return bool(self._raw or self._scope)

    def get(self) -> str | None:
        """The token to send, or None without token or scope."""
        if self._raw:
            return self._raw
        if not self._scope:
            return None
        if self._cached is not None and self._cached[1] - _TOKEN_MARGIN > time.time():
            return self._cached[0]
        try:
            from azure.core.exceptions import ClientAuthenticationError
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:  # pragma: no cover - installed with the cli extra
            raise CredentialError(f"--scope needs azure-identity ({exc})") from None
        try:
            if self._credential is None:
                self._credential = DefaultAzureCredential()
            access = self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            first = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise CredentialError(
                f"no Entra token for scope {self._scope}: {first or type(exc).__name__} "
                "(az login, or a managed identity / workload identity with access to the app)"
            ) from None
        self._cached = (str(access.token), float(access.expires_on))
        return self._cached[0]


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, JSON body and ``Location`` header."""

    status: int
    body: dict[str, Any]
    location: str | None = None


class ApiClient:
    """The dsr-export HTTP API at ``base_url`` (``http://127.0.0.1:7071``, ``https://app...``)."""

    def __init__(
        self,
        base_url: str,
        *,
        function_key: str | None = None,
        tokens: TokenSource | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        session: requests.Session | None = None,
    ) -> None:
        base = base_url.strip().rstrip("/")
        if base.lower().endswith("/api"):
            base = base[: -len("/api")]
        self.base_url = base
        self._key = function_key.strip() if function_key else None
        self._tokens = tokens or TokenSource()
        self._timeout = timeout
        self._verify = verify
        self._session = session or requests.Session()

    # -- the routes -------------------------------------------------------------------------
    def submit(self, request: Mapping[str, Any]) -> Answer:
        """``POST /api/exports``: 202 and the DSR's status (a new DSR or the one under way)."""
        return self._call("POST", "/exports", json_body=dict(request), expect=(200, 201, 202))

    def list_page(
        self,
        *,
        phase: str | None = None,
        overdue: bool | None = None,
        top: int | None = None,
        continuation: str | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """``GET /api/exports``: one page, ``{"items": [...], "continuationToken": ...}``
        (``tenant``: that tenant's DSRs only, ``TENANCY=multi``)."""
        params: dict[str, str] = {}
        if tenant:
            params["tenantId"] = tenant
        if phase:
            params["phase"] = phase
        if overdue is not None:
            params["overdue"] = "true" if overdue else "false"
        if top is not None:
            params["top"] = str(top)
        if continuation:
            params["continuationToken"] = continuation
        return self._call("GET", "/exports", params=params).body

    def list_all(
        self,
        *,
        phase: str | None = None,
        overdue: bool | None = None,
        top: int | None = None,
        on_page: Callable[[int], None] | None = None,
        tenant: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every page of the list, following ``continuationToken``."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self.list_page(
                phase=phase, overdue=overdue, top=top, continuation=token, tenant=tenant
            )
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            if on_page is not None:
                on_page(len(items))
            token = page.get("continuationToken") or None
            if token is None or token in seen:  # a token seen twice would loop forever
                return items
            seen.add(token)

    def get(self, request_id: str) -> dict[str, Any]:
        """``GET /api/exports/{id}``: the status document."""
        return self._call("GET", self._dsr(request_id)).body

    def cancel(self, request_id: str, reason: str) -> dict[str, Any]:
        """``POST /api/exports/{id}/cancel``: 202 and the status document."""
        path = self._dsr(request_id, "cancel")
        return self._call("POST", path, json_body={"reason": reason}).body

    def retry(self, request_id: str, reason: str) -> dict[str, Any]:
        """``POST /api/exports/{id}/retry``: 202 and the status document (with ``attempt``)."""
        path = self._dsr(request_id, "retry")
        return self._call("POST", path, json_body={"reason": reason}).body

    def extend(
        self,
        request_id: str,
        reason: str,
        *,
        days: int | None = None,
        months: int | None = None,
        reason_code: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/exports/{id}/extend``: 202, the ask accepted and pending (its ``askId``);
        the new deadline shows in the status once the DSR applied it."""
        body: dict[str, Any] = {"reason": reason}
        if days is not None:
            body["days"] = days
        if months is not None:
            body["months"] = months
        if reason_code:
            body["reasonCode"] = reason_code
        return self._call("POST", self._dsr(request_id, "extend"), json_body=body).body

    def download_grant(self, request_id: str) -> dict[str, Any]:
        """``POST /api/exports/{id}/download``: 201 and a short-lived container SAS URL.

        The answer holds a secret (the URL's signature): callers never print or store it.
        """
        path = self._dsr(request_id, "download")
        return self._call("POST", path, expect=(200, 201)).body

    def review(self, request_id: str) -> dict[str, Any]:
        """``GET /api/exports/{id}/package/review``: the package's files and the decisions."""
        return self._call("GET", self._dsr(request_id, "package/review")).body

    def decide_review(
        self,
        request_id: str,
        *,
        withhold: list[dict[str, str]] | None,
        approve: bool,
    ) -> dict[str, Any]:
        """``POST /api/exports/{id}/package/review``: withhold files (the list replaces the one
        before; None: unchanged) and approve."""
        body: dict[str, Any] = {"approve": approve}
        if withhold is not None:
            body["withhold"] = withhold
        return self._call("POST", self._dsr(request_id, "package/review"), json_body=body).body

    def evidence(self, request_id: str) -> dict[str, Any]:
        """``GET /api/exports/{id}/evidence``: the records and the service's verification."""
        return self._call("GET", self._dsr(request_id, "evidence")).body

    def erase(self, request_id: str, reason: str) -> dict[str, Any]:
        """``DELETE /api/exports/{id}/data``: 200 and the deletion receipt."""
        path = self._dsr(request_id, "data")
        return self._call("DELETE", path, json_body={"reason": reason}).body

    # -- the wire ---------------------------------------------------------------------------
    # -- the tenant registry (DSR.Admin) ----------------------------------------------------
    def tenants(self, state: str | None = None) -> dict[str, Any]:
        """``GET /api/tenants``: ``{"tenants": [...], "count": N}`` (``state``: ``active``, the
        server's default, ``retired`` or ``all``)."""
        params = {"state": state} if state else None
        return self._call("GET", "/tenants", params=params).body

    def add_tenant(self, tenant: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/tenants``: 201 and the tenant as registered."""
        return self._call("POST", "/tenants", json_body=dict(tenant), expect=(201,)).body

    def update_tenant(
        self, tenant_id: str, patch: Mapping[str, Any], *, if_match: str | None = None
    ) -> dict[str, Any]:
        """``PATCH /api/tenants/{id}``: a JSON merge patch; ``if_match``: only that version."""
        headers = {"if-match": if_match} if if_match else None
        return self._call(
            "PATCH", self._tenant(tenant_id), json_body=dict(patch), extra_headers=headers
        ).body

    def consent_link(self, tenant_id: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """``GET /api/tenants/{id}/consent-link``: the admin-consent URL for that tenant."""
        params = {"redirectUri": redirect_uri} if redirect_uri else None
        return self._call("GET", self._tenant(tenant_id, "consent-link"), params=params).body

    def retire_tenant(
        self, tenant_id: str, *, force: bool = False, if_match: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/tenants/{id}/retire``: the tenant, retired (``bindingsChanged``)."""
        headers = {"if-match": if_match} if if_match else None
        body = {"force": True} if force else {}
        return self._call(
            "POST", self._tenant(tenant_id, "retire"), json_body=body, extra_headers=headers
        ).body

    def reinstate_tenant(self, tenant_id: str, *, if_match: str | None = None) -> dict[str, Any]:
        """``POST /api/tenants/{id}/reinstate``: the tenant, active again."""
        headers = {"if-match": if_match} if if_match else None
        return self._call(
            "POST", self._tenant(tenant_id, "reinstate"), json_body={}, extra_headers=headers
        ).body

    # -- the callers' tenant bindings (DSR.Admin, bound to every tenant) ---------------------
    def bindings(self) -> dict[str, Any]:
        """``GET /api/bindings``: ``{"bindings": [...], "count": N}``."""
        return self._call("GET", "/bindings").body

    def binding(self, principal: str) -> dict[str, Any]:
        """``GET /api/bindings/{principal}``: the tenants one principal is bound to."""
        return self._call("GET", self._binding(principal)).body

    def bind(self, principal: str, binding: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /api/bindings/{principal}``: 201 (newly bound) or 200, and the binding."""
        path = self._binding(principal)
        return self._call("PUT", path, json_body=dict(binding), expect=(200, 201)).body

    def unbind(self, principal: str) -> dict[str, Any]:
        """``DELETE /api/bindings/{principal}``: the principal then reaches no tenant."""
        return self._call("DELETE", self._binding(principal)).body

    def _binding(self, principal: str) -> str:
        return "/bindings/" + quote(principal.strip(), safe="")

    def health(self, *, deep: bool = True) -> Answer:
        """``GET /api/health``: 200 ready, or 503 with each fault (both answered, not raised)."""
        params = {"deep": "true"} if deep else None
        return self._call("GET", "/health", params=params, expect=(200, 503))

    def gate(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``GET /api/gate`` (the home tenant's) or ``GET /api/gate/{tenantId}``: the tenant's
        submit gate, counts and times only."""
        path = "/gate" + ("/" + quote(tenant_id.strip(), safe="") if tenant_id else "")
        return self._call("GET", path).body

    def _tenant(self, tenant_id: str, action: str | None = None) -> str:
        path = "/tenants/" + quote(tenant_id.strip(), safe="")
        return f"{path}/{action}" if action else path

    def _dsr(self, request_id: str, action: str | None = None) -> str:
        path = "/exports/" + quote(request_id.strip(), safe="")
        return f"{path}/{action}" if action else path

    def headers(self) -> dict[str, str]:
        """What every request carries: the function key and/or the bearer token."""
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        if self._key:
            headers["x-functions-key"] = self._key
        token = self._tokens.get()
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200, 202),
        extra_headers: Mapping[str, str] | None = None,
    ) -> Answer:
        try:
            response = self._session.request(
                method,
                f"{self.base_url}/api{path}",
                json=json_body,
                params=dict(params or {}),
                headers={**self.headers(), **(extra_headers or {})},
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,  # the key and the token go nowhere --url does not name
            )
        except requests.RequestException as exc:
            raise NetworkError(network_message(self.base_url, exc)) from None
        if response.is_redirect or response.is_permanent_redirect:
            raise redirect_refusal(response.status_code, response.url, response.headers)
        content_type = (response.headers.get("content-type") or "").lower()
        try:
            payload: object = response.json() if response.content else None
        except (ValueError, RecursionError):  # not JSON, or nested beyond the reader
            payload = None
        if response.status_code not in expect:
            raise problem_of(response.status_code, content_type, response.text, payload)
        if not isinstance(payload, dict):
            raise ApiError(
                response.status_code, "Unexpected answer", "the body is not a JSON object"
            )
        return Answer(response.status_code, payload, response.headers.get("location"))
