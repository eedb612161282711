"""Every dsrctl command against a local server: what it sends, what it prints, its exit status
(submit, ls, show, cancel, and the lifecycle routes retry, extend, erase, evidence)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dsr_export.domain import evidence as domain_evidence
from dsrctl.commands import cli

NEW = {
    "requestId": "RITM1",
    "phase": "accepted",
    "terminal": False,
    "acceptedAt": "2026-12-01T10:00:00+00:00",
    "updatedAt": "2026-12-01T10:00:00+00:00",
    "deadline": "2027-01-01T10:00:00+00:00",
    "daysLeft": 31,
    "deadlineWarning": False,
    "overdue": False,
}
RUNNING = {
    **NEW,
    "phase": "exporting",
    "graphStatus": "running",
    "progress": 40,
    "updatedAt": "2026-12-02T10:00:00+00:00",
    "submittedBy": {"kind": "functionKey", "id": "sha256:0123"},
}


def dsrctl(server: HTTPServer, *args: str, key: str = "k", input: str | None = None):
    base = ["--url", server.url_for("/"), "--function-key", key]
    return CliRunner().invoke(cli, [*base, *args], input=input, catch_exceptions=False)


def body_of(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.get_data() or b"null")
    return body


# -- submit ------------------------------------------------------------------------------------
def test_submit_sends_the_request_and_says_it_was_accepted(httpserver: HTTPServer):
    sent: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        sent.append(body_of(request))
        return Response(json.dumps(NEW), 202, content_type="application/json")

    httpserver.expect_request("/api/exports", method="POST").respond_with_handler(answer)
    result = dsrctl(
        httpserver,
        "submit",
        "--request-id",
        "ritm1",
        "--user",
        "6e7b768e-07e2-4810-8459-485f84f8f204",
        "--regulation",
        "45",
        "--received-at",
        "2026-12-01T09:00:00Z",
    )
    assert result.exit_code == 0, result.output
    assert sent == [
        {
            "requestId": "ritm1",
            "user": "6e7b768e-07e2-4810-8459-485f84f8f204",
            "regulation": 45,
            "receivedAt": "2026-12-01T09:00:00Z",
        }
    ]
    assert result.stdout.strip() == "RITM1: accepted (deadline 2027-01-01 10:00 UTC)"


def test_submit_of_a_dsr_under_way_says_so(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports", method="POST").respond_with_json(RUNNING, 202)
    result = dsrctl(httpserver, "submit", "--request-id", "RITM1", "--user", "a@contoso.example")
    assert result.exit_code == 0
    assert result.stdout.strip() == "RITM1: already submitted (phase exporting)"


def test_submit_conflict_names_the_field(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports", method="POST").respond_with_response(
        Response(
            json.dumps(
                {
                    "title": "Request id already used",
                    "status": 409,
                    "detail": "this requestId belongs to a DSR for another user",
                    "errors": [
                        {"pointer": "/requestId", "detail": "already used for a DSR of another"}
                    ],
                }
            ),
            409,
            content_type="application/problem+json",
        )
    )
    result = dsrctl(httpserver, "submit", "--request-id", "RITM1", "--user", "b@contoso.example")
    assert result.exit_code == 1
    assert "error: 409 Request id already used" in result.stderr
    assert "  requestId: already used for a DSR of another" in result.stderr


def test_submit_json_prints_the_document(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports", method="POST").respond_with_json(NEW, 202)
    result = dsrctl(
        httpserver, "--json", "submit", "--request-id", "RITM1", "--user", "a@contoso.example"
    )
    assert json.loads(result.stdout) == NEW


# -- ls ---------------------------------------------------------------------------------------
def _doc(n: int, **extra) -> dict[str, Any]:
    return {**RUNNING, "requestId": f"R-{n}", **extra}


GRAPH = ["running", "40%"]


def test_ls_prints_a_table_and_passes_the_filters(httpserver: HTTPServer):
    httpserver.expect_request(
        "/api/exports", query_string={"phase": "exporting", "overdue": "false", "top": "2"}
    ).respond_with_json(
        {
            "items": [_doc(1), _doc(2, overdue=True, daysLeft=-1, graphStatus=None)],
            "continuationToken": "abc",
        }
    )
    result = dsrctl(httpserver, "ls", "--phase", "exporting", "--overdue", "false", "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["REQUEST", "ID", "PHASE", "DEADLINE", "DAYS", "LEFT", "GRAPH"]
    assert lines[1].split() == ["R-1", "exporting", "2027-01-01", "10:00", "UTC", "31", *GRAPH]
    assert lines[2].split()[5:] == ["OVERDUE", "40%"]
    assert "2 DSRs (more: --all for every page)" in result.stderr


def test_ls_tenant_lists_one_tenants_dsrs(httpserver: HTTPServer):
    tenant = "11111111-1111-4111-8111-111111111111"
    httpserver.expect_request("/api/exports", query_string={"tenantId": tenant}).respond_with_json(
        {"items": [_doc(1)], "continuationToken": None}
    )
    result = dsrctl(httpserver, "ls", "--tenant", tenant, "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[0] == "R-1"


def test_ls_all_follows_the_continuation_token(httpserver: HTTPServer):
    pages = {
        "": {"items": [_doc(1), _doc(2)], "continuationToken": "t1"},
        "t1": {"items": [_doc(3)], "continuationToken": "t2"},
        "t2": {"items": [_doc(4)], "continuationToken": None},
    }

    def answer(request: Request) -> Response:
        page = pages[request.args.get("continuationToken", "")]
        return Response(json.dumps(page), 200, content_type="application/json")

    httpserver.expect_request("/api/exports").respond_with_handler(answer)
    result = dsrctl(httpserver, "ls", "--all", "--json")
    assert result.exit_code == 0
    items = json.loads(result.stdout)["items"]
    assert [item["requestId"] for item in items] == ["R-1", "R-2", "R-3", "R-4"]
    result = dsrctl(httpserver, "ls", "--all")
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [
        "R-1",
        "R-2",
        "R-3",
        "R-4",
    ]
    assert "more" not in result.stderr


def test_ls_refuses_an_unknown_phase_locally(httpserver: HTTPServer):
    result = dsrctl(httpserver, "ls", "--phase", "running")
    assert result.exit_code == 2
    assert "running" in result.output


def test_ls_a_refused_query_names_the_parameter(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports").respond_with_response(
        Response(
            json.dumps(
                {
                    "title": "Invalid query",
                    "status": 400,
                    "detail": "one or more parameters are invalid",
                    "errors": [{"pointer": "/top", "detail": "must be a whole number"}],
                }
            ),
            400,
            content_type="application/problem+json",
        )
    )
    result = dsrctl(httpserver, "ls")
    assert result.exit_code == 1
    assert "  top: must be a whole number" in result.stderr


# -- show -------------------------------------------------------------------------------------
def test_show_prints_the_document_important_first(httpserver: HTTPServer):
    doc = {
        **RUNNING,
        "phase": "completed",
        "terminal": True,
        "manifest": {"blobCount": 3, "totalBytes": 2048, "products": {"Exchange": 3}},
    }
    httpserver.expect_request("/api/exports/RITM1").respond_with_json(doc)
    result = dsrctl(httpserver, "show", "RITM1")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["requestId:", "RITM1"]
    assert lines[1].split() == ["phase:", "completed"]
    assert lines[2].split() == ["graph:", "running", "40%"]
    assert any(line.split()[:2] == ["deadline:", "2027-01-01"] for line in lines)
    assert any(
        line.split() == ["manifest:", "3", "blobs,", "2.0", "KiB,", '{"Exchange":', "3}"]
        for line in lines
    )
    assert not any(line.startswith(("graphStatus", "progress")) for line in lines)


# -- cancel, retry, extend, erase ---------------------------------------------------------------
def test_cancel_sends_the_reason(httpserver: HTTPServer):
    seen: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        seen.append(body_of(request))
        return Response(json.dumps(RUNNING), 202, content_type="application/json")

    httpserver.expect_request("/api/exports/RITM1/cancel", method="POST").respond_with_handler(
        answer
    )
    result = dsrctl(httpserver, "cancel", "RITM1", "--reason", "withdrawn by the subject")
    assert result.exit_code == 0
    assert seen == [{"reason": "withdrawn by the subject"}]
    assert result.stdout.strip() == "RITM1: cancel requested (was exporting)"


def test_cancel_of_a_finished_dsr_is_refused(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/RITM1/cancel", method="POST").respond_with_response(
        Response(
            json.dumps({"title": "DSR already finished", "status": 409, "detail": "completed"}),
            409,
            content_type="application/problem+json",
        )
    )
    result = dsrctl(httpserver, "cancel", "RITM1", "--reason", "x")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 409 DSR already finished: completed"


def test_cancel_needs_a_reason(httpserver: HTTPServer):
    result = dsrctl(httpserver, "cancel", "RITM1")
    assert result.exit_code == 2
    assert "--reason" in result.output


def test_retry_sends_the_reason_and_shows_the_attempt(httpserver: HTTPServer):
    seen: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        seen.append(body_of(request))
        doc = {**NEW, "attempt": 2}
        return Response(json.dumps(doc), 202, content_type="application/json")

    httpserver.expect_request("/api/exports/RITM1/retry", method="POST").respond_with_handler(
        answer
    )
    result = dsrctl(httpserver, "retry", "RITM1", "--reason", "Graph outage is over")
    assert result.exit_code == 0, result.output
    assert seen == [{"reason": "Graph outage is over"}]
    assert result.stdout.strip() == "RITM1: retry accepted (attempt 2), phase accepted"


def test_retry_of_a_dsr_that_cannot_be_retried_is_refused(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/RITM1/retry", method="POST").respond_with_response(
        Response(
            json.dumps(
                {
                    "title": "Not retryable",
                    "status": 409,
                    "detail": "the DSR is exporting",
                    "errors": [{"field": "phase", "detail": "only failed or timed_out DSRs"}],
                }
            ),
            409,
            content_type="application/problem+json",
        )
    )
    result = dsrctl(httpserver, "retry", "RITM1", "--reason", "x")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: 409 Not retryable: the DSR is exporting",
        "  phase: only failed or timed_out DSRs",
    ]


@pytest.mark.parametrize(
    ("args", "sent"),
    [
        (["--days", "30"], {"days": 30}),
        (
            ["--months", "2", "--reason-code", "complexity"],
            {"months": 2, "reasonCode": "complexity"},
        ),
    ],
)
def test_extend_sends_days_or_months(httpserver: HTTPServer, args, sent):
    seen: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        seen.append(body_of(request))
        asked = {k: v for k, v in body_of(request).items() if k in ("days", "months")}
        doc = {
            "requestId": "RITM1",
            "askId": "ask_1",
            "state": "pending",
            "asked": asked,
            "statusUrl": "/api/exports/RITM1",
        }
        return Response(json.dumps(doc), 202, content_type="application/json")

    httpserver.expect_request("/api/exports/RITM1/extend", method="POST").respond_with_handler(
        answer
    )
    result = dsrctl(httpserver, "extend", "RITM1", "--reason", "many systems", *args)
    assert result.exit_code == 0, result.output
    assert seen == [{"reason": "many systems", **sent}]
    amount = ", ".join(f"{v} {k}" for k, v in sent.items() if k in ("days", "months"))
    assert result.stdout.strip() == (
        f"RITM1: extension ask_1 ({amount}) accepted, pending; "
        "see `dsrctl show RITM1` for the new deadline"
    )


@pytest.mark.parametrize("args", [[], ["--days", "3", "--months", "1"]])
def test_extend_needs_days_or_months_not_both(httpserver: HTTPServer, args):
    result = dsrctl(httpserver, "extend", "RITM1", "--reason", "x", *args)
    assert result.exit_code == 2
    assert "--days N or --months N" in result.output
    assert httpserver.log == []


def test_extend_beyond_the_law_is_refused_with_its_field(httpserver: HTTPServer):
    httpserver.expect_request("/api/exports/RITM1/extend", method="POST").respond_with_response(
        Response(
            json.dumps(
                {
                    "title": "Invalid request",
                    "status": 400,
                    "detail": "one or more fields are invalid",
                    "errors": [{"pointer": "/months", "detail": "GDPR allows at most 2 months"}],
                }
            ),
            400,
            content_type="application/problem+json",
        )
    )
    result = dsrctl(httpserver, "extend", "RITM1", "--reason", "x", "--months", "3")
    assert result.exit_code == 1
    assert "  months: GDPR allows at most 2 months" in result.stderr


RECEIPT = {
    "receiptId": "rcpt-1",
    "requestId": "RITM1",
    "deletedAt": "2026-12-20T10:00:00+00:00",
    "blobCount": 4,
    "totalBytes": 4096,
    "containers": ["dsr-ritm1-0123"],
}


def test_erase_sends_delete_with_the_reason_and_prints_the_receipt(httpserver: HTTPServer):
    seen: list[tuple[str, dict[str, Any]]] = []

    def answer(request: Request) -> Response:
        seen.append((request.method, body_of(request)))
        return Response(json.dumps(RECEIPT), 200, content_type="application/json")

    httpserver.expect_request("/api/exports/RITM1/data", method="DELETE").respond_with_handler(
        answer
    )
    result = dsrctl(httpserver, "erase", "RITM1", "--reason", "handed over", "--yes")
    assert result.exit_code == 0, result.output
    assert seen == [("DELETE", {"reason": "handed over"})]
    assert result.stdout.splitlines()[0] == (
        "RITM1: erased 4 blob(s), 4.0 KiB at 2026-12-20 10:00 UTC"
    )
    assert "rcpt-1" in result.stdout
    result = dsrctl(httpserver, "--json", "erase", "RITM1", "--reason", "handed over", "-y")
    assert json.loads(result.stdout) == RECEIPT


def test_erase_without_yes_and_without_a_terminal_refuses(httpserver: HTTPServer):
    result = dsrctl(httpserver, "erase", "RITM1", "--reason", "handed over")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert httpserver.log == []


# -- evidence ---------------------------------------------------------------------------------
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _records(request_id: str = "RITM1") -> list[dict[str, Any]]:
    first = domain_evidence.chain(
        None, "received", T0, request_id, {"source": "http", "regulation": "gdpr"}
    )
    second = domain_evidence.chain(
        first, "submitted", T0, request_id, {"operationId": "op-1", "submitAttempt": 1}
    )
    third = domain_evidence.chain(
        second, "completed", T0, request_id, {"operationId": "op-1", "blobCount": 3}
    )
    return [record.to_dict() for record in (first, second, third)]


def _evidence_doc(records: list[dict[str, Any]], verification: dict[str, Any]) -> dict[str, Any]:
    return {"requestId": "RITM1", "records": records, "verification": verification}


def test_evidence_verifies_the_chain_here(httpserver: HTTPServer, tmp_path):
    records = _records()
    verification = domain_evidence.verify(
        [json.dumps(r) for r in records], request_id="RITM1"
    ).to_dict()
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_json(
        _evidence_doc(records, verification)
    )
    saved = tmp_path / "ev.json"
    result = dsrctl(httpserver, "evidence", "RITM1", "--out", str(saved))
    assert result.exit_code == 0, result.output
    assert "verified here: OK: 3 records" in result.stdout
    assert f"head: {records[-1]['hash']}" in result.stdout
    assert "service says: OK: 3 records" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "KIND", "DATA"]
    assert lines[1].split()[:3] == ["0", "2026-12-01T10:00:00+00:00", "received"]
    assert json.loads(saved.read_text())["records"] == records
    head = records[-1]["hash"]
    assert dsrctl(httpserver, "evidence", "RITM1", "--head", head).exit_code == 0
    cut = dsrctl(httpserver, "evidence", "RITM1", "--head", "f" * 64)
    assert cut.exit_code == 1
    assert "truncated" in cut.stdout


def test_evidence_with_a_broken_chain_fails_even_if_the_service_says_ok(httpserver: HTTPServer):
    records = _records()
    records[1]["data"]["operationId"] = "op-forged"  # edited after the fact
    claimed_ok = {"ok": True, "records": 3, "head": records[-1]["hash"], "summary": "OK: 3 records"}
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_json(
        _evidence_doc(records, claimed_ok)
    )
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1
    assert "verified here: BROKEN at record 1 (line 2): hash mismatch" in result.stdout
    assert "disagrees" in result.stdout
    json_result = dsrctl(httpserver, "evidence", "RITM1", "--json")
    assert json_result.exit_code == 1
    assert json.loads(json_result.stdout)["records"] == records


def test_evidence_a_removed_record_breaks_the_chain(httpserver: HTTPServer):
    records = _records()
    del records[1]
    verification = domain_evidence.verify(
        [json.dumps(r) for r in records], request_id="RITM1"
    ).to_dict()
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_json(
        _evidence_doc(records, verification)
    )
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1
    assert "verified here: BROKEN at record 1 (line 2): seq gap" in result.stdout
    assert "service says: BROKEN" in result.stdout


def test_evidence_of_another_dsr_is_broken(httpserver: HTTPServer):
    records = _records("RITM2")
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_json(
        _evidence_doc(records, {"ok": True, "summary": "OK: 3 records"})
    )
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1
    assert "wrong request id" in result.stdout


def test_evidence_with_no_records_is_broken_even_if_the_service_says_ok(httpserver: HTTPServer):
    # F-8: "verified here: OK: 0 records", exit 0, before.
    claimed_ok = {"ok": True, "records": 0, "head": None, "summary": "OK: 0 records"}
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_json(
        _evidence_doc([], claimed_ok)
    )
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1, result.output
    assert "verified here: BROKEN at record 0: empty: the log has no records" in result.stdout
    assert "disagrees" in result.stdout
    assert dsrctl(httpserver, "evidence", "RITM1", "--json").exit_code == 1


def _raw_evidence(httpserver: HTTPServer, body: str) -> None:
    httpserver.expect_request("/api/exports/RITM1/evidence").respond_with_data(
        body, content_type="application/json"
    )


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ('{"seq": 1, "x": NaN}', "not JSON: NaN"),  # as the route answers an unreadable line
        ('"[[[[' + "[" * 100_000 + '"', "not JSON"),
        ('"\\u001b[2J"', "not JSON"),
    ],
)
def test_evidence_names_a_malformed_line_the_service_answered_as_text(
    httpserver: HTTPServer, record: str, why: str
):
    # F-8: the route answers a line it cannot read as its text; the CLI names it here.
    records = _records()
    body = json.dumps(_evidence_doc(records, {"ok": False, "summary": "BROKEN"}))
    body = body.replace(json.dumps(records[1]), json.dumps(record) if record[0] != '"' else record)
    _raw_evidence(httpserver, body)
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1, result.output
    assert f"verified here: BROKEN at record 1 (line 2): {why}" in result.stdout
    assert "\x1b" not in result.output


def test_evidence_answered_with_nan_or_deep_nesting_is_named_not_raised(httpserver: HTTPServer):
    # F-8: a service or proxy answering NaN inside a record made the CLI raise ValueError.
    records = _records()
    body = json.dumps(_evidence_doc(records, {"ok": True, "summary": "OK: 3 records"}))
    _raw_evidence(httpserver, body.replace('"blobCount": 3', '"blobCount": NaN'))
    result = dsrctl(httpserver, "evidence", "RITM1")
    assert result.exit_code == 1, result.output
    assert "verified here: BROKEN at record 2 (line 3): not JSON: NaN" in result.stdout
    httpserver.clear()
    _raw_evidence(httpserver, '{"records": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    deep = dsrctl(httpserver, "evidence", "RITM1")
    assert deep.exit_code == 1
    assert deep.stderr.startswith("error: 200 Unexpected answer: the body is not a JSON object")


def test_the_version_is_the_installed_distributions_everywhere_it_is_told():
    """One version, pyproject.toml's, read from the package metadata: ``--version`` and the
    User-Agent say the same."""
    from importlib import metadata

    from dsrctl.client import USER_AGENT

    installed = metadata.version("dsr-export")
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"dsrctl, version {installed}"
    assert f"dsrctl/{installed}" == USER_AGENT


# -- review ------------------------------------------------------------------------------------
REVIEW = {
    "requestId": "R1",
    "state": "open",
    "files": [
        {"path": "data/\u202etxt.exe", "size": 3, "sha256": "a" * 64, "product": "Teams"},
        {"path": "data/b.json", "size": 4, "sha256": "b" * 64, "product": None},
    ],
    "withheld": [{"sha256": "a" * 64, "reasonCode": "OTHERS_RIGHTS"}],
    "withheldCount": 1,
    "approved": False,
}


def test_review_lists_escaped_names_then_withholds_and_approves(httpserver: HTTPServer):
    sent: list[dict[str, Any]] = []

    def answer(request: Request) -> Response:
        if request.method == "POST":
            sent.append(body_of(request))
        return Response(json.dumps(REVIEW), 200, content_type="application/json")

    httpserver.expect_request("/api/exports/R1/package/review").respond_with_handler(answer)
    listed = dsrctl(httpserver, "review", "R1")
    assert listed.exit_code == 0, listed.output
    assert "\u202e" not in listed.output, "a bidi override is shown escaped, not obeyed"
    assert "OTHERS_RIGHTS" in listed.output
    assert "1 file(s) withheld" in listed.output
    decided = dsrctl(
        httpserver, "review", "R1", "--withhold", f"{'A' * 64}=LEGAL_PRIVILEGE", "--approve"
    )
    assert decided.exit_code == 0, decided.output
    assert sent == [
        {"approve": True, "withhold": [{"sha256": "a" * 64, "reasonCode": "LEGAL_PRIVILEGE"}]}
    ]
    bad = dsrctl(httpserver, "review", "R1", "--withhold", "nohash")
    assert bad.exit_code != 0
