"""What dsrctl prints cannot drive the operator's terminal (F-10): every character that is not
printable (ESC, OSC, CR, C1 controls, bidi overrides, line separators, lone surrogates) is
escaped by one helper that every command prints through, and rich markup in a value is text.

The commands' own tests (import, watch, download, evidence) feed them such values end to end.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Response

from dsrctl import output
from dsrctl.commands import cli

ROOT = Path(__file__).resolve().parents[2]
#: A value another party controls, as a terminal would act on it: set the window title (OSC),
#: clear the screen (CSI), go back to the start of the line (CR) and write a forged line, C1's
#: one-byte CSI, a right-to-left override, a line separator, and rich markup.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J\rRITM9: completed\x9b31m\u202eevil\u2028next\x00"
    "[bold red]markup[/] [link=https://evil.example]x[/link]"
)


def assert_inert(text: str) -> None:
    """Nothing in ``text`` a terminal acts on, but its own line breaks."""
    acting = sorted({char for char in text if not char.isprintable() and char != "\n"})
    assert acting == [], acting


def test_printable_escapes_every_non_printable_character_and_keeps_the_rest():
    shown = output.printable(HOSTILE)
    assert_inert(shown)
    assert "\n" not in shown
    assert shown.startswith("\\x1b]0;pwned\\x07\\x1b[2J\\rRITM9: completed\\x9b31m\\u202eevil")
    assert "\\u2028next\\x00" in shown
    assert "[bold red]markup[/]" in shown, "markup is the table's business, not this one's"
    assert output.printable("Müller 日本 ☃ tab\there") == "Müller 日本 ☃ tab\\there"
    assert output.printable("lone \udcff surrogate") == "lone \\udcff surrogate"
    assert output.printable("\U000e0041 tag") == "\\U000e0041 tag"
    assert output.printable(42) == "42"


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text: str):
    shown = output.printable(text)
    assert_inert(shown)
    assert "\n" not in shown
    if text.isprintable():
        assert shown == text


@given(st.recursive(st.text() | st.integers() | st.none(), lambda inner: st.lists(inner)))
def test_json_output_is_inert_and_still_the_same_json(value: object):
    document = {"value": value, "hostile": HOSTILE}
    text = output.json_text(document)
    assert_inert(text)
    assert json.loads(text) == document
    lone = {"id": "R\udcff-1"}  # what a CSV cell that is not UTF-8 becomes
    assert json.loads(output.json_text(lone)) == lone


def test_no_command_prints_around_the_helper():
    """One place prints: every ``click.echo``, ``print`` or rich ``.print`` call is in
    dsrctl/output.py, so nothing reaches the terminal without :func:`output.printable`."""
    offenders = []
    for path in sorted((ROOT / "dsrctl").glob("*.py")):
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "output":
                continue  # the helper itself
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"echo", "print", "secho", "log", "add_row"}:
                offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []


def test_a_table_on_a_terminal_shows_markup_and_controls_as_text(monkeypatch):
    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = output.Output()
    with out.console.capture() as captured:
        out.table(["A", "B"], [[HOSTILE, "[red]x[/red]"]])
    text = captured.get()
    assert "[red]x[/red]" in text
    assert "[bold red]markup[/]" in text
    assert "\x1b]0;pwned" not in text
    for raw in ("\x9b", "\u202e", "\r"):
        assert raw not in text


def test_ls_on_a_terminal_does_not_render_the_services_markup_or_codes(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(output, "is_interactive", lambda stream=None: True)
    monkeypatch.setenv("TERM", "xterm-256color")
    item = {"requestId": "[blink]R-1[/blink]", "phase": HOSTILE, "deadline": None}
    httpserver.expect_request("/api/exports").respond_with_json({"items": [item]})
    result = CliRunner().invoke(
        cli, ["--url", httpserver.url_for("/"), "ls"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "[blink]R-1[/blink]" in result.stdout
    assert "\x1b]0;pwned" not in result.stdout
    for raw in ("\x9b", "\u202e"):
        assert raw not in result.stdout


@pytest.mark.parametrize("where", ["show", "refusal", "json"])
def test_what_the_service_answers_is_printed_inert(httpserver: HTTPServer, where: str):
    if where == "refusal":
        body = {"title": HOSTILE, "status": 409, "errors": [{"pointer": "/x", "detail": HOSTILE}]}
        answer = Response(json.dumps(body), 409, content_type="application/problem+json")
    else:
        answer = Response(json.dumps({"requestId": "R-1", "phase": HOSTILE, HOSTILE: HOSTILE}))
    httpserver.expect_request("/api/exports/R-1").respond_with_response(answer)
    args = ["--json"] if where == "json" else []
    result = CliRunner().invoke(
        cli, ["--url", httpserver.url_for("/"), *args, "show", "R-1"], catch_exceptions=False
    )
    assert_inert(result.stdout)
    assert_inert(result.stderr)
    assert "\\x1b]0;pwned" in result.output or "\\u001b]0;pwned" in result.output
    if where == "json":
        assert json.loads(result.stdout)["phase"] == HOSTILE


def test_a_usage_error_does_not_echo_controls_from_the_command_line():
    """click quotes a bad value with repr() (escaped) in its usage errors; kept so."""
    result = CliRunner().invoke(cli, ["--url", "http://x", "ls", "--phase", HOSTILE])
    assert result.exit_code == 2
    assert "--phase" in result.stderr
    assert_inert(result.stderr)
    unknown = CliRunner().invoke(cli, [HOSTILE])
    assert unknown.exit_code == 2
    assert_inert(unknown.stderr)
