"""``dsrctl import FILE.csv``: many DSRs at once, idempotent, every row accounted for.

The columns are the request's JSON fields (``requestId,user,regulation,receivedAt,callbackUrl,
requestedBy,tenantId``; ``requestId`` and ``user`` are required, the rest may be left empty or
out; ``tenantId`` names the DSR's tenant with ``TENANCY=multi``).
Each row is one ``POST /api/exports``. A row the CLI cannot even turn into a request (too few or
too many fields, not UTF-8, not CSV, a required value empty) is refused here, with its line
number, and never sent. The API's answers sort the rest:

- 202 for a DSR it started: *accepted*;
- 202 for a request it already had (the same ticket sent again, or twice in the file):
  *duplicate*. The service answers a resubmission with the DSR under way, so the answer's
  status document shows it existed before: the orchestration has written its status
  (``submittedBy``, a later phase) or it was accepted earlier than it was last updated. A
  resubmission so quick that the orchestration has not started yet reads like a new DSR; an id
  already accepted earlier in the same file is a duplicate whatever its answer;
- 409 (the id names another user's DSR, or one with other values) and 400 (a field refused,
  each named) and any other refusal: *refused*, with the problem's fields.

Running the same file again is safe: nothing is started twice.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dsrctl.client import ApiClient, ApiError, FieldProblem

COLUMNS: Final = (
    "requestId",
    "user",
    "regulation",
    "receivedAt",
    "callbackUrl",
    "requestedBy",
    "tenantId",
)
REQUIRED: Final = ("requestId", "user")
#: Fields the orchestration writes into the status once it runs (absent from a new DSR's).
_WRITTEN_BY_THE_ORCHESTRATION: Final = ("submittedBy", "receivedAt", "regulation", "graphStatus")


class CsvFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, no header, a required column
    missing from the header): nothing was sent."""


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True)
class Row:
    """One CSV row as the request to send."""

    line: int
    request: dict[str, Any]

    @property
    def request_id(self) -> str:
        return str(self.request["requestId"])


@dataclass(frozen=True)
class RowResult:
    """What became of one row; ``reasons`` for a refusal (``field``: ``detail``)."""

    line: int
    request_id: str | None
    verdict: Verdict
    reasons: tuple[FieldProblem, ...] = ()
    status: int | None = None
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "line": self.line,
            "requestId": self.request_id,
            "verdict": self.verdict.value,
        }
        if self.status is not None:
            body["status"] = self.status
        if self.phase is not None:
            body["phase"] = self.phase
        if self.reasons:
            body["reasons"] = [{"field": r.field, "detail": r.detail} for r in self.reasons]
        return body


@dataclass
class Summary:
    """Every row's result, in file order, and the totals."""

    results: list[RowResult] = field(default_factory=list)
    #: Set when the import stopped early (the service could not be reached).
    stopped: str | None = None
    not_sent: int = 0

    def count(self, verdict: Verdict) -> int:
        return sum(1 for result in self.results if result.verdict is verdict)

    @property
    def refused(self) -> list[RowResult]:
        return [result for result in self.results if result.verdict is Verdict.REFUSED]

    def line(self) -> str:
        rows = len(self.results) + self.not_sent
        text = (
            f"{rows} row{'' if rows == 1 else 's'}: {self.count(Verdict.ACCEPTED)} accepted, "
            f"{self.count(Verdict.DUPLICATE)} duplicate, {self.count(Verdict.REFUSED)} refused"
        )
        return text + (f", {self.not_sent} not sent" if self.not_sent else "")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": self.count(Verdict.ACCEPTED),
            "duplicate": self.count(Verdict.DUPLICATE),
            "refused": self.count(Verdict.REFUSED),
            "rows": [result.to_dict() for result in self.results],
        }
        if self.stopped:
            body["stopped"] = self.stopped
            body["notSent"] = self.not_sent
        return body


def read_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are kept as escapes for their rows to refuse."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def parse(text: str) -> Iterator[Row | RowResult]:
    """The rows of a CSV text: a request to send, or the local refusal of a bad row."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _header(reader)
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise CsvFileError(
            f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}"
        )
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise CsvFileError(f"missing column(s) {', '.join(missing)} in the header (line 1)")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise CsvFileError(f"column(s) {', '.join(duplicated)} appear twice in the header")
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowResult(start, None, Verdict.REFUSED, (FieldProblem("(csv)", str(exc)),))
            if reader.line_num < start:  # no progress: the rest cannot be read
                return
            continue
        if not fields or all(not value.strip() for value in fields):
            continue  # blank lines (and a trailing one) are not rows
        yield _row(start, header, fields)


def _header(reader: Any) -> list[str]:
    try:
        for fields in reader:
            if any(value.strip() for value in fields):
                return [value.strip() for value in fields]
    except csv.Error as exc:
        raise CsvFileError(f"line {reader.line_num}: not CSV ({exc})") from None
    raise CsvFileError("the file is empty: it needs a header line (requestId,user,...)")


def _row(line: int, header: Sequence[str], fields: Sequence[str]) -> Row | RowResult:
    index = header.index("requestId")
    request_id = (fields[index].strip() if index < len(fields) else "") or None

    def refuse(name: str, detail: str) -> RowResult:
        return RowResult(line, request_id, Verdict.REFUSED, (FieldProblem(name, detail),))

    if len(fields) != len(header):
        if len(fields) < len(header):
            absent = ", ".join(header[len(fields) :])
            return refuse(
                absent.split(", ")[0],
                f"missing: the row has {len(fields)} field(s), the header {len(header)} "
                f"(no value for {absent})",
            )
        return refuse("(row)", f"the row has {len(fields)} fields, the header only {len(header)}")
    values = dict(zip(header, (value.strip() for value in fields), strict=True))
    for name, value in values.items():
        if any("\udc80" <= char <= "\udcff" for char in value):
            return refuse(name, "is not valid UTF-8 text")
    for name in REQUIRED:
        if not values.get(name):
            return refuse(name, "is required: the value is empty")
    request: dict[str, Any] = {}
    for name in COLUMNS:
        value = values.get(name, "")
        if not value:
            continue
        request[name] = int(value) if name == "regulation" and value.isdigit() else value
    return Row(line, request)


def existed_before(document: Mapping[str, Any]) -> bool:
    """Whether a 202's status document is that of a DSR already under way (see the module)."""
    if document.get("phase") not in (None, "accepted") or document.get("terminal"):
        return True
    if any(document.get(name) is not None for name in _WRITTEN_BY_THE_ORCHESTRATION):
        return True
    accepted, updated = document.get("acceptedAt"), document.get("updatedAt")
    return accepted is not None and updated is not None and accepted != updated


def send(
    client: ApiClient,
    items: Sequence[Row | RowResult],
    *,
    on_result: Callable[[RowResult], None] = lambda _: None,
) -> Summary:
    """Send every row in order and sort the answers; stops at the first network error (the
    rest is not sent: running the import again is safe)."""
    from dsrctl.client import NetworkError

    summary = Summary()
    sent_ids: set[str] = set()
    for index, item in enumerate(items):
        if isinstance(item, RowResult):
            result = item
        else:
            try:
                result = _answer(client, item, sent_ids)
            except NetworkError as exc:
                summary.stopped = f"line {item.line}: {exc}"
                rest = items[index:]
                summary.results += [local for local in rest if isinstance(local, RowResult)]
                summary.not_sent = sum(1 for row in rest if isinstance(row, Row))
                return summary
        summary.results.append(result)
        on_result(result)
    return summary


def _answer(client: ApiClient, row: Row, sent_ids: set[str]) -> RowResult:
    try:
        answer = client.submit(row.request)
    except ApiError as exc:
        reasons = exc.reasons()
        if exc.status == 409:
            reasons = [FieldProblem(r.field, f"conflict: {r.detail}") for r in reasons]
        return RowResult(row.line, row.request_id, Verdict.REFUSED, tuple(reasons), exc.status)
    document = answer.body
    canonical = str(document.get("requestId") or row.request_id).upper()
    duplicate = canonical in sent_ids or existed_before(document)
    sent_ids.add(canonical)
    verdict = Verdict.DUPLICATE if duplicate else Verdict.ACCEPTED
    return RowResult(
        row.line, row.request_id, verdict, status=answer.status, phase=document.get("phase")
    )


def describe(result: RowResult) -> list[str]:
    """A row's result as lines: ``line 3 (RITM1): accepted`` / each reason of a refusal."""
    where = f"line {result.line}" + (f" ({result.request_id})" if result.request_id else "")
    if result.verdict is not Verdict.REFUSED:
        return [f"{where}: {result.verdict.value}"]
    return [f"{where}: refused: {reason.field}: {reason.detail}" for reason in result.reasons]
