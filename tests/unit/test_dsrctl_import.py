"""``dsrctl import``: CSV rows good, duplicate and bad, against a local server that answers as
the intake does (202 new, 202 for a DSR under way, 409 another user's id, 400 a bad field)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dsrctl import csv_import
from dsrctl.commands import cli
from dsrctl.csv_import import CsvFileError, Row, RowResult, Verdict

HEADER = "requestId,user,regulation,receivedAt,callbackUrl,requestedBy\n"


def dsrctl(server: HTTPServer, *args: str):
    base = ["--url", server.url_for("/"), "--function-key", "k"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


class FakeIntake:
    """The intake's answers: a DSR per canonical id, idempotent for the same user."""

    def __init__(self) -> None:
        self.dsrs: dict[str, str] = {}
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.received.append(body)
        user = str(body.get("user", ""))
        if "@" not in user:
            return self._problem(
                400,
                "Invalid request",
                [{"pointer": "/user", "detail": "must be an Entra object id or a UPN"}],
            )
        if body.get("regulation") not in (None, "gdpr", "ccpa") and not isinstance(
            body.get("regulation"), int
        ):
            return self._problem(
                400, "Invalid request", [{"pointer": "/regulation", "detail": "must be gdpr"}]
            )
        request_id = str(body["requestId"]).upper()
        known = self.dsrs.get(request_id)
        if known is not None and known != user.lower():
            return self._problem(
                409,
                "Request id already used",
                [{"pointer": "/requestId", "detail": "already used for a DSR of another user"}],
            )
        doc = {"requestId": request_id, "phase": "accepted", "terminal": False}
        if known is None:
            self.dsrs[request_id] = user.lower()
            doc.update(
                acceptedAt="2026-12-01T10:00:00+00:00", updatedAt="2026-12-01T10:00:00+00:00"
            )
        else:
            doc.update(
                phase="exporting",
                acceptedAt="2026-12-01T10:00:00+00:00",
                updatedAt="2026-12-01T11:00:00+00:00",
                submittedBy={"kind": "functionKey", "id": "sha256:01"},
            )
        return Response(json.dumps(doc), 202, content_type="application/json")

    @staticmethod
    def _problem(status: int, title: str, errors: list[dict[str, Any]]) -> Response:
        body = {"title": title, "status": status, "detail": "refused", "errors": errors}
        return Response(json.dumps(body), status, content_type="application/problem+json")


@pytest.fixture
def intake(httpserver: HTTPServer) -> FakeIntake:
    fake = FakeIntake()
    httpserver.expect_request("/api/exports", method="POST").respond_with_handler(fake)
    return fake


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "dsrs.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# -- parsing --------------------------------------------------------------------------------------
def test_good_rows_become_requests_with_only_the_values_given():
    text = HEADER + (
        "RITM1,a@contoso.example,,,,\n"
        'RITM2, b@contoso.example ,45,2026-11-30T09:00:00Z,https://t.example/h,"Agent, Smith"\n'
        "RITM3,c@contoso.example,ccpa,,,\n"
    )
    rows = list(csv_import.parse(text))
    assert rows == [
        Row(2, {"requestId": "RITM1", "user": "a@contoso.example"}),
        Row(
            3,
            {
                "requestId": "RITM2",
                "user": "b@contoso.example",
                "regulation": 45,
                "receivedAt": "2026-11-30T09:00:00Z",
                "callbackUrl": "https://t.example/h",
                "requestedBy": "Agent, Smith",
            },
        ),
        Row(4, {"requestId": "RITM3", "user": "c@contoso.example", "regulation": "ccpa"}),
    ]


def test_only_some_columns_in_any_order():
    rows = list(csv_import.parse("user,requestId\na@contoso.example,R-1\n\n"))
    assert rows == [Row(2, {"requestId": "R-1", "user": "a@contoso.example"})]


def test_bad_rows_are_refused_locally_with_line_field_and_reason():
    text = HEADER + (
        "RITM1,a@contoso.example\n"  # too few fields
        ",b@contoso.example,,,,\n"  # empty requestId
        "RITM3,,,,,\n"  # empty user
        "RITM4,d@contoso.example,,,,,extra\n"  # too many
        "RITM5,e@contoso.example,,,,\n"
    )
    results = list(csv_import.parse(text))
    refused = [r for r in results if isinstance(r, RowResult)]
    assert [(r.line, r.request_id, r.reasons[0].field) for r in refused] == [
        (2, "RITM1", "regulation"),
        (3, None, "requestId"),
        (4, "RITM3", "user"),
        (5, "RITM4", "(row)"),
    ]
    assert "missing: the row has 2 field(s), the header 6" in refused[0].reasons[0].detail
    assert refused[1].reasons[0].detail == "is required: the value is empty"
    assert results[-1] == Row(6, {"requestId": "RITM5", "user": "e@contoso.example"})


def test_unparsable_rows_are_refused_and_the_rest_still_read():
    text = HEADER + 'RITM1,"a@contoso.example" junk,,,,\nRITM2,b@contoso.example,,,,\n'
    results = list(csv_import.parse(text))
    assert isinstance(results[0], RowResult)
    assert results[0].line == 2
    assert results[0].reasons[0].field == "(csv)"
    assert results[1] == Row(3, {"requestId": "RITM2", "user": "b@contoso.example"})


def test_a_multi_line_quoted_value_keeps_line_numbers_right():
    text = HEADER + 'RITM1,a@contoso.example,,,,"two\nlines"\nRITM2,,,,,\n'
    results = list(csv_import.parse(text))
    assert isinstance(results[0], Row)
    assert results[0].line == 2
    assert isinstance(results[1], RowResult)
    assert results[1].line == 4


def test_not_utf8_refuses_the_row_not_the_file(tmp_path: Path):
    path = write(
        tmp_path, HEADER.encode() + b"RITM1,\xff@contoso.example,,,,\nR2,b@c.example,,,,\n"
    )
    results = list(csv_import.parse(csv_import.read_text(path)))
    assert isinstance(results[0], RowResult)
    assert results[0].reasons[0].field == "user"
    assert "UTF-8" in results[0].reasons[0].detail
    assert isinstance(results[1], Row)


def test_a_bom_is_not_part_of_the_first_column(tmp_path: Path):
    path = write(tmp_path, b"\xef\xbb\xbf" + HEADER.encode() + b"R1,a@contoso.example,,,,\n")
    assert list(csv_import.parse(csv_import.read_text(path))) == [
        Row(2, {"requestId": "R1", "user": "a@contoso.example"})
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "empty"),
        ("requestId,regulation\nR1,gdpr\n", "missing column(s) user"),
        ("requestId,user,ticket\nR1,a@b.example,1\n", "unknown column(s) ticket"),
        ("requestId,user,user\nR1,a@b.example,x\n", "appear twice"),
    ],
)
def test_a_file_that_cannot_be_imported_says_why(text: str, said: str):
    with pytest.raises(CsvFileError, match=said.replace("(", r"\(").replace(")", r"\)")):
        list(csv_import.parse(text))


def test_a_duplicate_is_told_by_the_document():
    new = {"phase": "accepted", "acceptedAt": "T1", "updatedAt": "T1"}
    assert not csv_import.existed_before(new)
    assert csv_import.existed_before({**new, "updatedAt": "T2"})
    assert csv_import.existed_before({**new, "phase": "exporting"})
    assert csv_import.existed_before({**new, "submittedBy": {"kind": "queue", "id": "q"}})
    assert csv_import.existed_before({**new, "terminal": True, "phase": "completed"})


# -- the command ------------------------------------------------------------------------------
CSV = HEADER + (
    "RITM1,a@contoso.example,,,,\n"  # 2 accepted
    "RITM2,b@contoso.example,ccpa,,,\n"  # 3 accepted
    "ritm1,a@contoso.example,,,,\n"  # 4 duplicate (in this file)
    "RITM3,not-a-user,,,,\n"  # 5 refused by the API (400)
    "RITM2,x@contoso.example,,,,\n"  # 6 refused by the API (409)
    "RITM4,d@contoso.example\n"  # 7 refused locally
    "RITM0,z@contoso.example,,,,\n"  # 8 duplicate (existed before the import)
)


def test_import_sorts_every_row_and_names_each_reason(
    intake: FakeIntake, httpserver: HTTPServer, tmp_path: Path
):
    intake.dsrs["RITM0"] = "z@contoso.example"
    result = dsrctl(httpserver, "import", str(write(tmp_path, CSV)))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "line 2 (RITM1): accepted",
        "line 3 (RITM2): accepted",
        "line 4 (ritm1): duplicate",
        "line 5 (RITM3): refused: user: must be an Entra object id or a UPN",
        "line 6 (RITM2): refused: requestId: conflict: already used for a DSR of another user",
        "line 7 (RITM4): refused: regulation: missing: the row has 2 field(s), the header 6 "
        "(no value for regulation, receivedAt, callbackUrl, requestedBy)",
        "line 8 (RITM0): duplicate",
    ]
    assert lines[7] == "refused:"
    assert lines[8:11] == ["  " + line for line in lines[3:6]]
    assert lines[-1] == "7 rows: 2 accepted, 2 duplicate, 3 refused"
    assert len(intake.received) == 6  # the locally refused row was never sent


def test_import_again_is_all_duplicates(intake: FakeIntake, httpserver: HTTPServer, tmp_path):
    path = write(tmp_path, HEADER + "RITM1,a@contoso.example,,,,\nRITM2,b@contoso.example,,,,\n")
    assert dsrctl(httpserver, "import", str(path)).exit_code == 0
    again = dsrctl(httpserver, "import", str(path))
    assert again.exit_code == 0
    assert again.stdout.splitlines()[-1] == "2 rows: 0 accepted, 2 duplicate, 0 refused"
    assert len(intake.dsrs) == 2


def test_import_json_summary(intake: FakeIntake, httpserver: HTTPServer, tmp_path: Path):
    result = dsrctl(httpserver, "--json", "import", str(write(tmp_path, CSV)))
    summary = json.loads(result.stdout)
    assert (summary["accepted"], summary["duplicate"], summary["refused"]) == (3, 1, 3)
    by_line = {row["line"]: row for row in summary["rows"]}
    assert by_line[5]["reasons"] == [
        {"field": "user", "detail": "must be an Entra object id or a UPN"}
    ]
    assert by_line[5]["status"] == 400
    assert by_line[6]["status"] == 409
    assert by_line[8]["verdict"] == "accepted"  # RITM0 is new to this server


def test_import_dry_run_sends_nothing(httpserver: HTTPServer, tmp_path: Path):
    result = dsrctl(httpserver, "import", "--dry-run", str(write(tmp_path, CSV)))
    assert result.exit_code == 1  # a row is refused locally
    assert "line 2 (RITM1): would be sent" in result.stdout
    assert result.stdout.splitlines()[-1] == "6 row(s) to send, 1 refused"
    assert httpserver.log == []


def test_import_of_a_bad_file_is_one_error(httpserver: HTTPServer, tmp_path: Path):
    result = dsrctl(httpserver, "import", str(write(tmp_path, "requestId,ticket\nR1,x\n")))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown column(s) ticket")
    missing = dsrctl(httpserver, "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr
    assert "Traceback" not in missing.output


def test_import_stops_when_the_service_goes_away(tmp_path: Path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write(tmp_path, CSV)
    result = CliRunner().invoke(cli, ["--url", f"http://127.0.0.1:{port}", "import", str(path)])
    assert result.exit_code == 3
    assert "stopped at line 2: cannot reach" in result.stderr
    assert "it is idempotent" in result.stderr
    assert "7 rows: 0 accepted, 0 duplicate, 1 refused, 6 not sent" in result.stdout


def test_import_on_a_terminal_shows_a_progress_bar(
    intake: FakeIntake, httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from dsrctl import output

    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    result = dsrctl(httpserver, "import", str(write(tmp_path, CSV)))
    assert result.exit_code == 1
    assert "importing" in result.stdout
    assert "line 2 (RITM1): accepted" not in result.stdout  # the bar, not a line per row
    assert "  line 5 (RITM3): refused: user: must be an Entra object id or a UPN" in result.stdout
    assert "7 rows: 3 accepted, 1 duplicate, 3 refused" in result.stdout


def test_verdicts_are_the_three_of_the_summary():
    assert [v.value for v in Verdict] == ["accepted", "duplicate", "refused"]


# -- what a CSV cell can do to the terminal (F-10) ---------------------------------------------
#: Cells a ticket export could carry: an OSC that retitles the window, CSI clear-screen, a CR
#: that forges an "accepted" line over the refusal, C1 CSI, a bidi override, rich markup.
FORGED_ID = '"RITM5\x1b]0;x\x07\x1b[2J\rline 9 (RITM9): accepted\x9b1m\u202e[bold]b[/bold]"'
HOSTILE_CSV = (
    HEADER
    + f"{FORGED_ID},a@contoso.example,,,,\n"  # refused by the API (a request id it refuses)
    + "RITM6,\x1b[31mnot-a-user\u2028,,,,\n"  # refused by the API, its user echoed nowhere
    + "RITM7\x1b[8m,b@contoso.example\n"  # refused here: too few fields
).encode() + b"RITM8\xff\x1b,c@contoso.example,,,,\n"  # not UTF-8, refused here


def _inert(text: str) -> None:
    assert [c for c in text if not c.isprintable() and c != "\n"] == [], repr(text)


def test_import_escapes_what_the_cells_hold(httpserver: HTTPServer, tmp_path: Path):
    # F-10: the request id was printed raw, ESC, OSC, CR and all.
    def refuse(request: Request) -> Response:
        body = {"title": "Invalid request", "status": 400, "detail": "refused"}
        body["errors"] = [{"pointer": "/requestId", "detail": "must be 1-100 characters"}]
        return Response(json.dumps(body), 400, content_type="application/problem+json")

    httpserver.expect_request("/api/exports", method="POST").respond_with_handler(refuse)
    path = write(tmp_path, HOSTILE_CSV)
    for args in (["import", str(path)], ["import", "--dry-run", str(path)]):
        result = dsrctl(httpserver, *args)
        assert result.exit_code == 1, result.output
        _inert(result.stdout)
        _inert(result.stderr)
        assert "(RITM5\\x1b]0;x\\x07\\x1b[2J\\rline 9 (RITM9): accepted\\x9b1m\\u202e" in (
            result.stdout
        )
        assert "(RITM8\\udcff\\x1b)" in result.stdout
        assert "(RITM7\\x1b[8m)" in result.stdout
    as_json = dsrctl(httpserver, "--json", "import", str(path))
    _inert(as_json.stdout)
    rows = json.loads(as_json.stdout)["rows"]
    assert rows[0]["requestId"].startswith("RITM5\x1b]0;x\x07"), "the JSON is the same once parsed"


def test_import_with_a_bar_escapes_what_the_cells_hold(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from dsrctl import output

    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    monkeypatch.setenv("TERM", "xterm-256color")
    httpserver.expect_request("/api/exports", method="POST").respond_with_json(
        {"title": "Invalid request", "status": 400}, status=400
    )
    result = dsrctl(httpserver, "import", str(write(tmp_path, HOSTILE_CSV)))
    assert result.exit_code == 1
    for raw in ("\x1b]0;x", "\x1b[2J", "\rline 9", "\x9b", "\u202e", "\x1b[31m", "\x1b[8m"):
        assert raw not in result.stdout, repr(raw)
    assert "[bold]b[/bold]" in result.stdout
