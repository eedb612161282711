"""Verify a DSR's evidence log offline: ``python -m dsr_export.evidence_cli verify FILE``.

``FILE`` (``-`` for standard input) is a log as downloaded from the evidence container (JSON
lines) or the answer of ``GET /api/exports/{requestId}/evidence`` (a JSON document with its
``records``). Prints ``OK: N records`` and exits 0, or ``BROKEN at record K (line L): why`` and
exits 1; 2 when the file cannot be read. ``--request-id`` checks every record is that DSR's,
``--head`` that the log ends at a hash known from elsewhere (so a log cut short is caught).
An empty log is broken (a DSR's log opens with its ``received`` record), and so is a line that
is not a record's JSON (``NaN``, deep nesting, not an object, not UTF-8): named by its line
number, never raised.

Needs nothing but the standard library and the domain: no Azure SDK, no settings, no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dsr_export.domain import evidence


def log_lines(content: bytes) -> list[bytes] | list[str]:
    """The log's lines, from JSON lines or from the evidence endpoint's document."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):  # JSON lines (more than one record), or not JSON
        document = None
    if isinstance(document, dict) and "records" in document and "hash" not in document:
        return evidence.document_lines(document)
    return content.split(b"\n")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dsr_export.evidence_cli", description="Check a DSR's evidence log."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="verify a log's hash chain, naming a break")
    check.add_argument("file", help="the log (JSON lines or the evidence endpoint's JSON); -")
    check.add_argument("--request-id", help="the DSR every record must belong to")
    check.add_argument("--head", help="the hash the log must end at")
    args = parser.parse_args(argv)
    try:
        if args.file == "-":
            content = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as stream:
                content = stream.read()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        lines = log_lines(content)
    except evidence.BrokenRecord as exc:
        print(f"BROKEN: {exc}")
        return 1
    result = evidence.verify(lines, request_id=args.request_id, head=args.head)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
