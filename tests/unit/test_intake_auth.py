"""The HTTP API's refusals of callers, as a ticketing system sees them: each bad token a 401 or
a 403 problem document, the signing keys out of reach a 503, and a function key recorded by
exactly the key the Functions host let in (review finding F-6)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import jwt
import pytest

from devhost.entra import EntraTenant
from dsr_export.adapters.entra import SigningKeys, TokenValidator
from dsr_export.domain.callers import KeysUnavailable
from dsr_export.domain.job import ExportJob
from dsr_export.settings import EntraSettings
from tests.unit.intake_fakes import (
    FUNCTION_KEY,
    T0,
    USER_ID,
    FakeDurableClient,
    app_settings,
    body,
    call,
    intake_settings,
    request,
)

OTHER_TENANT = "00000000-0000-4000-8000-0000000000ff"


@pytest.fixture(autouse=True)
def _configured(swap: Callable[..., None]):
    swap(clock=lambda: T0)
    with intake_settings():
        yield


@pytest.fixture
def client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def submit(client: FakeDurableClient, user_function: Callable[[str], Any]) -> Callable[..., Any]:
    def send(*, url: str = "exports", **kwargs: Any) -> Any:
        req = request("POST", "exports", {"requestId": "R-1", "user": USER_ID}, **kwargs)
        if url != "exports":
            req = _with_url(req, f"http://localhost/api/{url}")
        return call(user_function("submit_dsr"), client, req=req)

    return send


def _with_url(req: Any, url: str) -> Any:
    return func.HttpRequest(
        method=req.method,
        url=url,
        headers=dict(req.headers),
        params=dict(req.params),
        route_params={},
        body=req.get_body(),
    )


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem: dict[str, Any] = body(response)
    assert problem["status"] == status
    return problem


def _bad_tokens(tenant: EntraTenant) -> dict[str, str]:
    now = datetime.now(UTC)
    good = jwt.decode(tenant.mint(["DSR.Submit"]), options={"verify_signature": False})
    return {
        "wrong issuer": tenant.mint(["DSR.Submit"], claims={"iss": "https://evil.example/v2.0"}),
        "wrong audience": tenant.mint(["DSR.Submit"], claims={"aud": "api://other-app"}),
        "wrong tenant": tenant.mint(["DSR.Submit"], claims={"tid": OTHER_TENANT}),
        "expired": tenant.mint(["DSR.Submit"], now=now - timedelta(hours=3)),
        "not yet valid": tenant.mint(["DSR.Submit"], now=now + timedelta(hours=1)),
        "alg none": jwt.encode(good, key="", algorithm="none", headers={"kid": "k"}),
        "not a bearer token": "",
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong issuer",
        "wrong audience",
        "wrong tenant",
        "expired",
        "not yet valid",
        "alg none",
        "not a bearer token",
    ],
)
def test_a_bad_token_is_a_401_problem_even_with_a_valid_key_beside_it(
    submit, client, entra_tokens, case
):
    token = _bad_tokens(entra_tokens)[case]
    headers = _bearer(token) if token else {"authorization": "Basic dXNlcjpwYXNz"}
    response = submit(headers=headers)  # the function key is sent too (request's default)
    problem = _is_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert problem["type"].endswith("#unauthenticated")
    assert client.started == []


def test_a_valid_token_without_the_role_is_a_403_problem(submit, client, entra_tokens):
    response = submit(headers=_bearer(entra_tokens.mint(["DSR.Read", "DSR.Manage"])))
    assert "DSR.Submit" in _is_problem(response, 403)["detail"]
    assert client.started == []


def test_a_valid_token_with_the_role_submits_as_its_application(submit, client, entra_tokens):
    response = submit(headers=_bearer(entra_tokens.mint(["DSR.Submit"], subject_id="sn")))
    assert response.status_code == 202
    assert ExportJob.from_input(client.started[0][2]).submitted_by == {
        "kind": "application",
        "id": "sn",
        "tenantId": entra_tokens.tenant_id,
    }


def test_a_token_signed_with_a_rotated_key_is_accepted_after_one_refetch(
    submit, client, entra_tokens
):
    assert submit(headers=_bearer(entra_tokens.mint(["DSR.Read"]))).status_code == 403
    fetched = len(entra_tokens.requests)
    entra_tokens.rotate(keep_previous=False)
    response = submit(headers=_bearer(entra_tokens.mint(["DSR.Submit"])))
    assert response.status_code == 202
    assert [p for p in entra_tokens.requests[fetched:] if p.endswith("/keys")] != []


def test_keys_out_of_reach_are_a_503_problem_with_retry_after(submit, client, entra_tokens, swap):
    def down(url: str) -> Any:
        raise KeysUnavailable("down")

    entra = EntraSettings.from_env(entra_tokens.app_settings())
    assert entra is not None
    swap(token_validator=TokenValidator(entra, SigningKeys(entra, fetch=down)))
    response = submit(headers=_bearer(entra_tokens.mint(["DSR.Submit"])))
    _is_problem(response, 503)
    assert response.headers["Retry-After"] == "60"
    assert client.started == []


def test_a_bearer_token_without_a_registration_is_refused(submit, client):
    with app_settings(AUTH_CLIENT_ID=""):
        response = submit(headers=_bearer("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"))
    assert "no Entra ID tokens" in _is_problem(response, 401)["detail"]


# -- F-6: the key recorded is the key the host let in -----------------------------------------
def _fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def test_a_repeated_code_is_refused_not_recorded_under_a_key_that_does_not_exist(submit, client):
    """The host lets ``?code=KEY&code=x`` in with KEY; the app sees ``KEY,x``."""
    response = submit(
        key=None, params={"code": f"{FUNCTION_KEY},x"}, url=f"exports?code={FUNCTION_KEY}&code=x"
    )
    assert "once" in _is_problem(response, 401)["detail"]
    assert client.started == []


def test_the_code_the_host_checked_is_the_one_recorded(submit, client):
    response = submit(key=None, params={"code": FUNCTION_KEY}, url=f"exports?code={FUNCTION_KEY}")
    assert response.status_code == 202
    submitted = ExportJob.from_input(client.started[0][2]).submitted_by
    assert submitted == {"kind": "functionKey", "id": _fingerprint(FUNCTION_KEY)}


def test_the_header_wins_over_code_as_it_does_for_the_host(submit, client):
    response = submit(params={"code": "other"}, url="exports?code=other")
    assert response.status_code == 202
    submitted = ExportJob.from_input(client.started[0][2]).submitted_by
    assert submitted == {"kind": "functionKey", "id": _fingerprint(FUNCTION_KEY)}
