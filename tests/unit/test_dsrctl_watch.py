"""``dsrctl watch``: plain lines (one per change) without a terminal, live display with one, the
exit status from how the DSRs ended; against a local server that plays a DSR's life."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dsrctl import output
from dsrctl.commands import cli

ROOT = Path(__file__).resolve().parents[2]
DSRCTL = [sys.executable, "-m", "dsrctl"]


def doc(request_id: str, phase: str, graph: str | None = None, progress: int | None = None, **kw):
    body = {
        "requestId": request_id,
        "phase": phase,
        "terminal": phase in {"completed", "failed", "timed_out", "cancelled"},
        "deadline": "2027-01-01T10:00:00+00:00",
        "daysLeft": 31,
        "deadlineWarning": False,
        "overdue": False,
        **kw,
    }
    if graph is not None:
        body["graphStatus"] = graph
    if progress is not None:
        body["progress"] = progress
    return body


LIFE = [
    doc("R-1", "accepted"),
    doc("R-1", "accepted"),  # no change: no line
    doc("R-1", "submitting"),
    doc("R-1", "exporting", "notStarted", 0),
    doc("R-1", "exporting", "running", 40),
    doc("R-1", "exporting", "running", 40),
    doc("R-1", "exporting", "running", 90),
    doc("R-1", "completed", "succeeded", 100, daysLeft=None),
]
FAILED = [
    doc("R-2", "exporting", "running", 10),
    doc(
        "R-2",
        "failed",
        "failed",
        10,
        error={"code": "GraphExportFailed", "message": "Graph gave up"},
    ),
]


def play(server: HTTPServer, lives: dict[str, Sequence[dict[str, Any] | int]]) -> dict[str, int]:
    """Serve each DSR's documents in turn (the last one forever); an int is a bare status."""
    polls = dict.fromkeys(lives, 0)

    def answer(request: Request) -> Response:
        request_id = request.path.rsplit("/", 1)[-1]
        life = lives.get(request_id)
        if life is None:
            body = {"title": "Unknown DSR", "status": 404, "detail": f"no DSR {request_id}"}
            return Response(json.dumps(body), 404, content_type="application/problem+json")
        step = life[min(polls[request_id], len(life) - 1)]
        polls[request_id] += 1
        if isinstance(step, int):
            return Response(status=step)
        return Response(json.dumps(step), 200, content_type="application/json")

    server.expect_request(re.compile(r"^/api/exports/[^/]+$")).respond_with_handler(answer)
    return polls


def dsrctl(server: HTTPServer, *args: str):
    base = ["--url", server.url_for("/"), "--function-key", "k"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_without_a_terminal_a_plain_line_per_change_until_completed(httpserver: HTTPServer):
    play(httpserver, {"R-1": LIFE})
    result = dsrctl(httpserver, "watch", "R-1", "--interval", "0.01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "R-1: accepted  days left 31",
        "R-1: submitting  days left 31",
        "R-1: exporting  graph notStarted 0%  days left 31",
        "R-1: exporting  graph running 40%  days left 31",
        "R-1: exporting  graph running 90%  days left 31",
        "R-1: completed  graph succeeded 100%",
        "1 DSR: 1 completed",
    ]
    assert "\x1b[" not in result.output


def test_several_dsrs_and_one_failed_exits_non_zero(httpserver: HTTPServer):
    play(httpserver, {"R-1": LIFE, "R-2": FAILED})
    result = dsrctl(httpserver, "watch", "R-1", "R-2", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    lines = result.stdout.splitlines()
    assert (
        "R-2: failed  graph failed 10%  days left 31  error GraphExportFailed: Graph gave up"
        in (lines)
    )
    assert "R-1: completed  graph succeeded 100%" in lines
    assert lines[-1] == "2 DSRs: 1 completed, 1 failed"


def test_an_unknown_dsr_is_given_up_and_fails_the_watch(httpserver: HTTPServer):
    polls = play(httpserver, {"R-1": LIFE})
    result = dsrctl(httpserver, "watch", "R-1", "NOPE", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    assert "NOPE: unknown DSR (no DSR NOPE)" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "2 DSRs: 1 completed, 1 unknown"
    assert polls["R-1"] == len(LIFE)


def test_the_wait_has_a_deadline(httpserver: HTTPServer):
    play(httpserver, {"R-1": [doc("R-1", "exporting", "running", 5)]})
    result = dsrctl(httpserver, "watch", "R-1", "--interval", "0.05", "--timeout", "0.3")
    assert result.exit_code == output.EXIT_STILL_RUNNING
    assert result.stdout.splitlines() == [
        "R-1: exporting  graph running 5%  days left 31",
        "1 DSR: 1 still running",
    ]
    assert "gave up waiting after 0.3 s: R-1 still running" in result.stderr


def test_a_passing_outage_is_a_warning_and_polling_goes_on(httpserver: HTTPServer):
    play(httpserver, {"R-1": [503, doc("R-1", "exporting", "running", 5), 500, *LIFE[-1:]]})
    result = dsrctl(httpserver, "watch", "R-1", "--interval", "0.01")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: R-1: 50") == 2
    assert "(polling again)" in result.stderr
    assert result.stdout.splitlines()[-1] == "1 DSR: 1 completed"


def test_a_refusal_polling_cannot_mend_ends_the_watch(httpserver: HTTPServer):
    play(httpserver, {"R-1": [401]})
    result = dsrctl(httpserver, "watch", "R-1", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    assert "error: 401 Unauthorized: no valid function key or token" in result.stderr


def test_json_prints_a_document_per_change(httpserver: HTTPServer):
    play(httpserver, {"R-1": LIFE})
    result = dsrctl(httpserver, "--json", "watch", "R-1", "--interval", "0.01")
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["phase"] for d in docs] == ["accepted", "submitting", *["exporting"] * 3, "completed"]


def test_on_a_terminal_the_live_display_ends_with_a_line_per_dsr(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    # A terminal that draws (CI runs the suite with TERM=dumb, where rich draws plainly).
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    play(httpserver, {"R-1": LIFE, "R-2": FAILED})
    result = dsrctl(httpserver, "watch", "R-1", "R-2", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    assert "\x1b[" in result.stdout  # rich drew on the "terminal"
    assert "R-1: completed  graph succeeded 100%" in result.stdout
    assert "2 DSRs: 1 completed, 1 failed" in result.stdout


def test_in_ci_no_terminal_no_stdin_term_dumb_it_prints_plain_lines(httpserver: HTTPServer):
    """The real thing: ``python -m dsrctl`` as CI runs it, stdout a pipe, no stdin."""
    play(httpserver, {"R-1": LIFE})
    env = {**os.environ, "TERM": "dumb", "CI": "1"}
    env.pop("FORCE_COLOR", None)
    env.pop("FORCE_TERMINAL", None)
    run = subprocess.run(
        [*DSRCTL, "--url", httpserver.url_for("/"), "watch", "R-1", "--interval", "0.01"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "R-1: accepted  days left 31"
    assert run.stdout.splitlines()[-1] == "1 DSR: 1 completed"
    assert len(run.stdout.splitlines()) == 7
    assert "\x1b" not in run.stdout + run.stderr


def test_term_dumb_is_not_interactive_even_on_a_tty(monkeypatch: pytest.MonkeyPatch):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert output.is_interactive(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not output.is_interactive(Tty())


# -- another operator's words on this terminal (F-10) -----------------------------------------
#: A cancel reason as the status shows it: it retitles the window, clears the screen and forges
#: a "completed" line over the real one (CR), in C1 and bidi forms too, with rich markup.
REASON = (
    "\x1b]0;ok\x07\x1b[2J\rR-3: completed  graph succeeded 100%\x9b2K\u202edesrever[red]x[/red]"
)
CANCELLED = [
    doc("R-3", "exporting", "running", 10),
    doc("R-3", "cancelled", error={"code": "Cancelled", "message": REASON}),
]


def _inert(text: str) -> None:
    assert [c for c in text if not c.isprintable() and c != "\n"] == [], repr(text)


def test_a_cancel_reason_is_printed_escaped(httpserver: HTTPServer):
    # F-10: the reason reached the terminal raw (watch without a terminal, and --json).
    play(httpserver, {"R-3": CANCELLED})
    result = dsrctl(httpserver, "watch", "R-3", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    _inert(result.stdout)
    assert result.stdout.splitlines()[-2] == (
        "R-3: cancelled  days left 31  error Cancelled: \\x1b]0;ok\\x07\\x1b[2J\\rR-3: completed"
        "  graph succeeded 100%\\x9b2K\\u202edesrever[red]x[/red]"
    )
    as_json = dsrctl(httpserver, "--json", "watch", "R-3", "--interval", "0.01")
    _inert(as_json.stdout)
    assert json.loads(as_json.stdout.splitlines()[-1])["error"]["message"] == REASON


def test_a_cancel_reason_on_the_live_display_is_escaped_and_not_markup(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    lives: dict[str, Sequence[dict[str, Any] | int]] = {
        "R-3": CANCELLED,
        "R-4": [
            doc("R-4", "[blink]exporting[/blink]\x1b]0;t\x07", "\x9b2J", 5),
            503,
            doc("R-4", "completed"),
        ],
    }
    play(httpserver, lives)
    result = dsrctl(httpserver, "watch", "R-3", "R-4", "--interval", "0.01")
    assert result.exit_code == output.EXIT_FAILED
    for raw in ("\x1b]0;ok", "\x1b[2J", "\rR-3: completed", "\x9b", "\u202e", "\x1b]0;t"):
        assert raw not in result.stdout, repr(raw)
    assert "[blink]exporting[/blink]" in result.stdout
    assert "\\x1b]0;ok\\x07" in result.stdout
