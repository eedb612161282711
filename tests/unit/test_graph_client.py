"""The Graph client against a local HTTPS server: parsing, retries, errors, token pinning."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from pytest_httpserver import HTTPServer
from werkzeug import Response

from devhost.tls import make_tls_files, server_ssl_context
from dsr_export.adapters.graph import GraphClient
from dsr_export.adapters.graph_errors import GraphError
from dsr_export.domain.errors import classify
from dsr_export.settings import GraphSettings

USER = "6f1c2f4e-8a53-4c1e-9a55-0c1d2e3f4a5b"
SAS = "https://acct.blob.core.windows.net/dsr-x?si=graph-export&spr=https&sv=2025-01-05&sr=c&sig=c2VjcmV0"
TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJyb2xlcyI6W119.c2ln"


class _Credential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(TOKEN, 4_102_444_800)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory):
    return make_tls_files(Path(tmp_path_factory.mktemp("tls")))


def _server(tls) -> HTTPServer:
    context: ssl.SSLContext = server_ssl_context(tls)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    return server


@pytest.fixture
def graph(tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServer]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls.ca_bundle)
    server = _server(tls)
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def elsewhere(tls) -> Iterator[HTTPServer]:
    server = _server(tls)
    yield server
    server.stop()


def _client(server: HTTPServer) -> tuple[GraphClient, _Credential]:
    credential = _Credential()
    base = server.url_for("/").rstrip("/")
    settings = GraphSettings(base_url=base, api_version="beta", timeout_seconds=5)
    return GraphClient(settings, credential, backoff_factor=0), credential


def _graph_error(status: int, code: str, message: str = "m", **headers: str) -> Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2026-03-01T09:00:00", "request-id": "rid-1"},
        }
    }
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def test_202_gives_operation_id_url_and_retry_after(graph: HTTPServer):
    op_url = graph.url_for("/beta/dataPolicyOperations/op-42")
    graph.expect_oneshot_request(
        f"/beta/users/{USER}/exportPersonalData", method="POST", json={"storageLocation": SAS}
    ).respond_with_response(Response(status=202, headers={"Location": op_url, "Retry-After": "90"}))
    client, credential = _client(graph)
    submitted = client.submit_export(USER, SAS)
    assert submitted.operation_id == "op-42"
    assert submitted.operation_url == op_url
    assert submitted.retry_after_seconds == 90
    assert credential.scopes == [graph.url_for("/").rstrip("/") + "/.default"]
    request, _ = graph.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "sig=" not in request.url, "the SAS travels in the body only"


def test_operation_location_is_the_fallback_and_retry_after_defaults_to_60(graph: HTTPServer):
    op_url = graph.url_for("/beta/dataPolicyOperations/op-7")
    graph.expect_oneshot_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        Response(status=202, headers={"Operation-Location": op_url})
    )
    submitted = _client(graph)[0].submit_export(USER, SAS)
    assert (submitted.operation_id, submitted.retry_after_seconds) == ("op-7", 60)


def test_operation_is_parsed_whatever_type_progress_has(graph: HTTPServer):
    graph.expect_request("/beta/dataPolicyOperations/op-1").respond_with_json(
        {
            "id": "op-1",
            "status": "running",
            "progress": "42.5",
            "submittedDateTime": "2026-03-01T09:00:00Z",
            "completedDateTime": None,
            "userId": USER,
            "storageLocation": "https://acct.blob.core.windows.net/dsr-x",
        }
    )
    operation = _client(graph)[0].get_operation(graph.url_for("/beta/dataPolicyOperations/op-1"))
    assert operation.status == "running"
    assert operation.progress == 42.5
    assert operation.completed_at is None
    assert operation.submitted_at is not None
    assert operation.submitted_at.tzinfo is not None


@pytest.mark.parametrize(
    ("status", "code", "category", "hint_mentions"),
    [
        (400, "StorageLocationShouldNotAllowReadAccess", "configuration", "EXPORT_SAS_MODE"),
        (400, "StorageLocationAlreadyUsed", "service", ""),
        (400, "InvalidInput", "user", "object id"),
        (404, "ResourceNotFound", "user", "No such user"),
        (403, "Forbidden", "configuration", "User.Export.All"),
        (401, "InvalidAuthenticationToken", "configuration", "AZURE_CLIENT_ID"),
    ],
)
def test_permanent_errors_fail_at_once_with_a_fix(
    graph: HTTPServer, status, code, category, hint_mentions
):
    graph.expect_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        _graph_error(status, code, "refused")
    )
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].submit_export(USER, SAS)
    error = caught.value
    assert (error.status, error.code, error.graph_request_id) == (status, code, "rid-1")
    assert len(graph.log) == 1, "permanent errors are not retried"
    verdict = classify(error, subject="submit")
    assert verdict.retry is False
    assert verdict.error["category"] == category
    assert hint_mentions in verdict.error.get("hint", "")


def test_operation_not_found_is_permanent(graph: HTTPServer):
    graph.expect_request("/beta/dataPolicyOperations/gone").respond_with_response(
        _graph_error(400, "OperationNotFound")
    )
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].get_operation(graph.url_for("/beta/dataPolicyOperations/gone"))
    verdict = classify(caught.value, subject="poll")
    assert verdict.retry is False
    assert verdict.error["category"] == "operation"


def test_short_429_is_retried_inline_honouring_retry_after(graph: HTTPServer):
    op = "/beta/dataPolicyOperations/op-1"
    graph.expect_ordered_request(op).respond_with_response(
        _graph_error(429, "TooManyRequests", **{"Retry-After": "1"})
    )
    graph.expect_ordered_request(op).respond_with_json(
        {"id": "op-1", "status": "complete", "progress": 100}
    )
    operation = _client(graph)[0].get_operation(graph.url_for(op))
    assert operation.status == "complete"
    assert len(graph.log) == 2


def test_long_retry_after_goes_back_to_the_orchestrator(graph: HTTPServer):
    graph.expect_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        _graph_error(429, "TooManyRequests", **{"Retry-After": "600"})
    )
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].submit_export(USER, SAS)
    assert len(graph.log) == 1, "not slept on inside the activity"
    verdict = classify(caught.value, subject="submit")
    assert (verdict.retry, verdict.retry_after_seconds) == (True, 600)


def test_submit_is_not_repeated_inline_after_an_ambiguous_500(graph: HTTPServer):
    graph.expect_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        _graph_error(500, "InternalServerError")
    )
    with pytest.raises(GraphError) as caught:
        _client(graph)[0].submit_export(USER, SAS)
    assert len(graph.log) == 1
    assert caught.value.transient


def test_reads_are_retried_on_5xx(graph: HTTPServer):
    op = "/beta/dataPolicyOperations/op-1"
    for _ in range(2):
        graph.expect_ordered_request(op).respond_with_response(
            _graph_error(503, "ServiceUnavailable")
        )
    graph.expect_ordered_request(op).respond_with_json({"id": "op-1", "status": "running"})
    assert _client(graph)[0].get_operation(graph.url_for(op)).status == "running"
    assert len(graph.log) == 3


def test_token_is_never_sent_to_a_foreign_location(graph: HTTPServer, elsewhere: HTTPServer):
    foreign = elsewhere.url_for("/beta/dataPolicyOperations/op-1")
    graph.expect_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        Response(status=202, headers={"Location": foreign})
    )
    client = _client(graph)[0]
    with pytest.raises(GraphError) as caught:
        client.submit_export(USER, SAS)
    assert caught.value.code == "ForeignLocation"
    with pytest.raises(GraphError):
        client.get_operation(foreign)
    assert elsewhere.log == [], "nothing, and so no token, reached the other host"


def test_no_answer_is_transient_and_says_nothing_secret(graph: HTTPServer):
    client = _client(graph)[0]
    graph.stop()
    with pytest.raises(GraphError) as caught:
        client.submit_export(USER, SAS)
    assert caught.value.status == 0
    assert caught.value.transient
    assert "sig=" not in str(caught.value)
    assert TOKEN not in str(caught.value)
    graph.start()


def test_an_explicit_default_port_is_the_same_origin_and_a_bad_retry_after_is_ignored(
    graph: HTTPServer,
):
    client = _client(graph)[0]
    op_url = graph.url_for("/beta/dataPolicyOperations/op-9")
    graph.expect_oneshot_request(f"/beta/users/{USER}/exportPersonalData").respond_with_response(
        Response(status=202, headers={"Location": op_url, "Retry-After": "soon-ish"})
    )
    assert client.submit_export(USER, SAS).retry_after_seconds == 60
    settings = GraphSettings(base_url="https://graph.microsoft.com", timeout_seconds=5)
    pinned = GraphClient(settings, _Credential(), backoff_factor=0)
    with pytest.raises(GraphError) as caught:
        pinned.get_operation("https://graph.microsoft.com.evil.example/beta/x")
    assert caught.value.code == "ForeignLocation"
    pinned._check_origin("https://GRAPH.microsoft.com:443/beta/x")  # does not raise
