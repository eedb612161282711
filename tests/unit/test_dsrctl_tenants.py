"""``dsrctl tenants retire|reinstate|list --state`` against a local server: what each sends, and
that retiring (which unbinds the tenant's callers) asks for ``--yes`` when it cannot ask."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dsrctl.commands import cli

TID = "2f7b3c1e-8d4a-4b6f-9e2d-1a3c5b7d9f0e"
RETIRED = {
    "tenantId": TID,
    "displayName": "Contoso",
    "state": "retired",
    "retiredAt": "2027-03-01T09:00:00+00:00",
    "bindingsChanged": ["sha256:0f1e2d3c4b5a6978"],
}


def dsrctl(server: HTTPServer, *args: str):
    base = ["--url", server.url_for("/"), "--function-key", "k"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_retire_sends_force_and_if_match_and_prints_the_bindings_changed(httpserver) -> None:
    seen: list[tuple[Any, str | None]] = []

    def answer(request: Request) -> Response:
        seen.append((json.loads(request.get_data() or b"null"), request.headers.get("If-Match")))
        return Response(json.dumps(RETIRED), 200, content_type="application/json")

    httpserver.expect_request(f"/api/tenants/{TID}/retire", method="POST").respond_with_handler(
        answer
    )
    refused = dsrctl(httpserver, "tenants", "retire", TID)
    assert refused.exit_code == 2
    assert "--yes" in refused.output
    assert seen == []
    done = dsrctl(httpserver, "tenants", "retire", TID, "--yes", "--force", "--if-match", '"e1"')
    assert done.exit_code == 0, done.output
    assert seen == [({"force": True}, '"e1"')]
    assert f"{TID}: retired at 2027-03-01 09:00 UTC" in done.stdout
    assert "sha256:0f1e2d3c4b5a6978" in done.output


def test_reinstate_and_the_list_of_retired_tenants(httpserver) -> None:
    httpserver.expect_request(f"/api/tenants/{TID}/reinstate", method="POST").respond_with_json(
        {**RETIRED, "state": "active"}
    )
    httpserver.expect_request(
        "/api/tenants", method="GET", query_string="state=retired"
    ).respond_with_json({"tenants": [RETIRED], "count": 1})
    back = dsrctl(httpserver, "tenants", "reinstate", TID)
    assert (back.exit_code, back.stdout.strip()) == (0, f"{TID}: active")
    listed = dsrctl(httpserver, "tenants", "list", "--state", "retired")
    assert listed.exit_code == 0, listed.output
    assert "retired" in listed.stdout
