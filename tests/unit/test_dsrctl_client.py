"""dsrctl's HTTP client: authentication headers, problem documents, bare host refusals and
network errors, against a local server."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dsrctl import client as client_module
from dsrctl.client import ApiClient, ApiError, NetworkError, TokenSource, field_name, scrub
from dsrctl.commands import cli

PROBLEM = "application/problem+json"


def dsrctl(server: HTTPServer | str, *args: str, key: str | None = "k"):
    url = server if isinstance(server, str) else server.url_for("/")
    base = ["--url", url] + (["--function-key", key] if key else [])
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def problem(status: int, title: str, detail: str, errors=None) -> Response:
    body = {"type": "https://x/errors.md#x", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, content_type=PROBLEM)


def test_the_key_and_the_token_are_sent_and_api_is_added_once(httpserver: HTTPServer):
    seen: list[Request] = []

    def answer(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps({"requestId": "R-1", "phase": "accepted"}), 200)

    httpserver.expect_request("/api/exports/R-1").respond_with_handler(answer)
    for base in (httpserver.url_for("/"), httpserver.url_for("/api"), httpserver.url_for("/api/")):
        api = ApiClient(base, function_key="key-1", tokens=TokenSource(token="tok-1"))
        assert api.get("R-1")["phase"] == "accepted"
    assert [r.headers["x-functions-key"] for r in seen] == ["key-1"] * 3
    assert {r.headers["authorization"] for r in seen} == {"Bearer tok-1"}
    assert seen[0].headers["user-agent"].startswith("dsrctl/")


def test_a_scope_gets_its_token_from_default_azure_credential(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    asked: list[str] = []

    class FakeCredential:
        def get_token(self, scope: str):
            asked.append(scope)
            return SimpleNamespace(token="entra-token", expires_on=4_000_000_000)

    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeCredential)
    httpserver.expect_request(
        "/api/exports/R-1", headers={"authorization": "Bearer entra-token"}
    ).respond_with_json({"requestId": "R-1", "phase": "exporting"})
    result = dsrctl(httpserver, "--scope", "api://app-id/.default", "show", "R-1", key=None)
    assert result.exit_code == 0, result.output
    assert "exporting" in result.stdout
    result = dsrctl(httpserver, "--scope", "api://app-id/.default", "show", "R-1", key=None)
    assert asked == ["api://app-id/.default"] * 2  # one credential per run, tokens cached


def test_a_credential_that_cannot_get_a_token_says_so_without_a_traceback(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    from azure.core.exceptions import ClientAuthenticationError

    class NoCredential:
        def get_token(self, scope: str):
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", NoCredential)
    result = dsrctl(httpserver, "--scope", "api://app-id/.default", "show", "R-1", key=None)
    assert result.exit_code == 3
    assert "no Entra token for scope api://app-id/.default" in result.stderr
    assert "Traceback" not in result.output


def test_token_and_scope_together_is_a_usage_error(httpserver: HTTPServer):
    result = dsrctl(httpserver, "--token", "t", "--scope", "api://x/.default", "show", "R-1")
    assert result.exit_code == 2
    assert "not both" in result.output


def test_environment_variables_configure_the_connection(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    httpserver.expect_request(
        "/api/exports/R-9", headers={"x-functions-key": "env-key", "authorization": "Bearer env-t"}
    ).respond_with_json({"requestId": "R-9", "phase": "completed", "terminal": True})
    monkeypatch.setenv("DSRCTL_URL", httpserver.url_for("/"))
    monkeypatch.setenv("DSRCTL_FUNCTION_KEY", "env-key")
    monkeypatch.setenv("DSRCTL_TOKEN", "env-t")
    result = CliRunner().invoke(cli, ["show", "R-9"])
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout


def test_no_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DSRCTL_URL", raising=False)
    result = CliRunner().invoke(cli, ["show", "R-1"])
    assert result.exit_code == 2
    assert "--url" in result.output


def test_a_problem_is_one_line_then_one_line_per_field(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports", method="POST").respond_with_response(
        problem(
            400,
            "Invalid request",
            "one or more fields are invalid",
            [
                {"pointer": "/user", "detail": "must be an Entra object id or a UPN"},
                {"field": "receivedAt", "detail": "must be an RFC 3339 date-time"},
                {"pointer": "", "detail": "the body must be a JSON object"},
            ],
        )
    )
    result = dsrctl(httpserver, "submit", "--request-id", "R-1", "--user", "nobody")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: 400 Invalid request: one or more fields are invalid",
        "  user: must be an Entra object id or a UPN",
        "  receivedAt: must be an RFC 3339 date-time",
        "  (body): the body must be a JSON object",
    ]
    assert result.stdout == ""


def test_a_problem_with_json_is_also_printed_raw(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/NOPE").respond_with_response(
        problem(404, "Unknown DSR", "no DSR with requestId NOPE")
    )
    result = dsrctl(httpserver, "show", "NOPE", "--json")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 404 Unknown DSR: no DSR with requestId NOPE"
    assert json.loads(result.stdout)["title"] == "Unknown DSR"


@pytest.mark.parametrize(
    ("status", "said"),
    [(401, "no valid function key or token"), (404, "no such route"), (500, "service failed")],
)
def test_the_hosts_bare_refusals_are_named(httpserver: HTTPServer, status: int, said: str):
    httpserver.expect_request("/api/exports/R-1").respond_with_response(Response(status=status))
    result = dsrctl(httpserver, "show", "R-1")
    assert result.exit_code == 1
    assert said in result.stderr
    assert result.stderr.startswith(f"error: {status} ")


def test_an_unreachable_service_is_one_line_and_exit_3():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = dsrctl(f"http://127.0.0.1:{port}", "show", "R-1")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: cannot reach http://127.0.0.1:{port}")
    assert "Connection refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_service_that_does_not_answer_in_time(httpserver: HTTPServer):
    import time

    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("{}", 200)

    httpserver.expect_request("/api/exports/R-1").respond_with_handler(slow)
    api = ApiClient(httpserver.url_for("/"), timeout=0.3)
    with pytest.raises(NetworkError, match="did not answer in time"):
        api.get("R-1")


def test_a_success_that_is_not_json_is_an_unexpected_answer(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/R-1").respond_with_data("<html>", status=200)
    with pytest.raises(ApiError, match="Unexpected answer"):
        ApiClient(httpserver.url_for("/")).get("R-1")


def test_pointers_become_field_names_and_secrets_are_scrubbed():
    assert field_name("/user") == "user"
    assert field_name("/a/b~1c") == "a.b/c"
    assert field_name("") == "(body)"
    text = scrub("see https://acct.blob.core.windows.net/c?sv=1&sig=abc%2Fdef and Bearer eyJabc.d")
    assert "sig=" not in text
    assert "eyJ" not in text
    assert "https://acct.blob.core.windows.net/c" in text


def test_request_ids_are_quoted_into_the_path(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/A:B-1/cancel", method="POST").respond_with_json(
        {"requestId": "A:B-1", "phase": "exporting"}, status=202
    )
    assert client_module.ApiClient(httpserver.url_for("/")).cancel("A:B-1", "why")["phase"]


# -- redirects: never followed with credentials (F-11) -----------------------------------------
def _other_origin(server: HTTPServer, path: str) -> str:
    """The same server under another origin (127.0.0.1 and localhost are two origins)."""
    host = "127.0.0.1" if "localhost" in server.url_for("/") else "localhost"
    return f"http://{host}:{server.port}{path}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_no_credential_goes_on(httpserver: HTTPServer, status: int):
    # F-11: requests followed the redirect and sent x-functions-key to the other origin.
    seen: list[Request] = []

    def elsewhere(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps({"requestId": "R-1", "phase": "accepted"}), 200)

    target = _other_origin(httpserver, "/collect?code=1")
    httpserver.expect_request("/api/exports/R-1").respond_with_response(
        Response(status=status, headers={"Location": target})
    )
    httpserver.expect_request("/api/exports/R-1/cancel").respond_with_response(
        Response(status=status, headers={"Location": target})
    )
    httpserver.expect_request("/collect").respond_with_handler(elsewhere)
    result = dsrctl(httpserver, "--token", "tok-1", "show", "R-1")
    cancelled = dsrctl(httpserver, "--token", "tok-1", "cancel", "R-1", "--reason", "x")
    assert seen == [], [dict(request.headers) for request in seen]
    for run in (result, cancelled):
        assert run.exit_code == 1, run.output
        first = run.stderr.splitlines()[0]
        assert first.startswith(f"error: {status} Redirect not followed: "), first
        assert target.split("?")[0] in first
        assert "code=1" not in first, "the target's query is not shown"
        assert "tok-1" not in run.output


def test_a_same_origin_redirect_is_not_followed_either(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/R-1").respond_with_response(
        Response(status=301, headers={"Location": "/api/exports/R-1/"})
    )
    with pytest.raises(ApiError, match="Redirect not followed") as refused:
        ApiClient(httpserver.url_for("/"), function_key="key-1").get("R-1")
    assert refused.value.status == 301
    assert len(httpserver.log) == 1


def test_the_export_storage_redirect_is_not_followed(httpserver: HTTPServer):
    from dsrctl import download

    seen: list[Request] = []

    def elsewhere(request: Request) -> Response:
        seen.append(request)
        return Response("<x/>", 200)

    httpserver.expect_request("/elsewhere").respond_with_handler(elsewhere)
    httpserver.expect_request("/dsr-c").respond_with_response(
        Response(status=307, headers={"Location": _other_origin(httpserver, "/elsewhere")})
    )
    source = download.open_container(httpserver.url_for("/dsr-c") + "?sv=1&sp=rl&sig=SECRET")
    with pytest.raises(download.DownloadFailed) as failed:
        source.list()
    assert seen == []
    assert str(failed.value) == "the export storage answered a redirect (307): not followed"
