"""The DSR's evidence: an append-only, hash-chained log that outlives the exported data.

One log per DSR, one JSON line per record. Each record carries the SHA-256 of the record before
it (``prev``; :data:`GENESIS` for the first) and its own (``hash``, over the canonical JSON of
every other field), so editing, removing or reordering any record breaks the chain at that
record, and :func:`verify` names it. The chain proves the log is whole up to its last record;
that nothing was cut off the end is proved by the storage (the evidence container is
append-only and immutable in Azure) or by comparing the head hash with one kept elsewhere
(``head=`` of :func:`verify`).

The log is kept long after the export is erased, so it must hold no personal data: each kind of
record may carry only the fields listed for it in :data:`FIELDS`, with values of the listed type
(no free text), and no string value may contain ``@`` (a UPN or e-mail address), a URL or a SAS
signature. People and services appear by pseudonymous ids only (object ids, application ids,
key fingerprints), the DSR by its canonical request id.

Pure: the time is an argument, the bytes are the caller's to store.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from dsr_export.domain.request import InvalidRequest, canonical_request_id, validate_request_id

#: ``prev`` of the first record (seq 0).
GENESIS: Final = "0" * 64
#: The JSON-lines media type, for whoever serves a log.
MEDIA_TYPE: Final = "application/x-ndjson"
#: Longest string value a record may carry: ids, codes and timestamps, never prose.
MAX_VALUE_LENGTH: Final = 200
#: The idempotency key a writer may put in ``data``: an event is recorded once per key.
EVENT_ID: Final = "eventId"

Value: TypeAlias = str | int | bool | Mapping[str, int]


class Kind(enum.StrEnum):
    """What a record attests."""

    RECEIVED = "received"
    SUBMITTED = "submitted"
    SUBMIT_RECOVERED = "submit_recovered"
    GRAPH_STATUS = "graph_status"
    COMPLETED = "completed"
    SAS_REVOKED = "sas_revoked"
    #: Ended without data: failed, timed out or cancelled, with the error code.
    FINISHED = "finished"
    #: The export was handed to the data subject (or the privacy team for them).
    EXPORT_DELIVERED = "export_delivered"
    #: An operator asked for an extension (the API's record; the orchestrator applies it).
    EXTENSION_ASKED = "extension_asked"
    EXTENDED = "extended"
    RETRIED = "retried"
    CALLBACK = "callback"
    ERASED = "erased"
    RETENTION_DELETED = "retention_deleted"
    HISTORY_PURGED = "history_purged"
    #: The subject's package was built (its zip's and manifest's SHA-256).
    PACKAGED = "packaged"
    #: Packaging stopped: the export no longer matches what completed (counts only).
    PACKAGE_REFUSED = "package_refused"
    #: A reviewer withheld one file of the package (its hash and reason code, never its name).
    PACKAGE_FILE_WITHHELD = "package_file_withheld"
    #: A reviewer approved the package for release (how many files withheld, which codes).
    PACKAGE_REVIEWED = "package_reviewed"


class _Counts:
    """A field type: a flat object of names to counts (``{"Exchange": 12}``)."""


COUNTS: Final = _Counts()
#: A field's type: ``str``, ``int``, ``bool``, :data:`COUNTS`, or the strings it may take.
FieldType: TypeAlias = type | _Counts | frozenset[str]

_ACTOR: Final[Mapping[str, FieldType]] = {"actorKind": str, "actorId": str}
_BLOBS: Final[Mapping[str, FieldType]] = {
    "container": str,
    "blobCount": int,
    "totalBytes": int,
    "manifestSha256": str,
}

#: A deletion receipt: what was deleted (every container of the DSR), under which receipt.
_DELETION: Final[Mapping[str, FieldType]] = {
    **_BLOBS,
    "containerCount": int,
    "receiptId": str,
}

#: The fields each kind may carry (besides :data:`EVENT_ID`, which any may), and their types.
FIELDS: Final[Mapping[Kind, Mapping[str, FieldType]]] = {
    Kind.RECEIVED: {
        "givenId": str,
        "source": frozenset({"http", "queue"}),
        "regulation": str,
        "regulationDays": int,
        "receivedAt": str,
        "deadline": str,
        "submitterKind": str,
        "submitterId": str,
        "submitterTenantId": str,
        "userObjectId": str,
        # A correction: the record of ``seq`` described a submission whose start lost the race.
        "supersedesSeq": int,
    },
    Kind.SUBMITTED: {
        "operationId": str,
        "container": str,
        "sasMode": frozenset({"stored-policy", "user-delegation"}),
        "sasExpiry": str,
        "submitAttempt": int,
        "userObjectId": str,
    },
    Kind.SUBMIT_RECOVERED: {
        "operationId": str,
        "container": str,
        "submitAttempt": int,
        "lookups": int,
    },
    Kind.GRAPH_STATUS: {
        "operationId": str,
        "graphStatus": str,
        "previousStatus": str,
        "progress": int,
    },
    Kind.COMPLETED: {"operationId": str, **_BLOBS, "products": COUNTS},
    Kind.SAS_REVOKED: {
        "container": str,
        "sasMode": frozenset({"stored-policy", "user-delegation"}),
        "revoked": bool,
        "sasExpiry": str,
    },
    Kind.FINISHED: {
        "phase": frozenset({"failed", "timed_out", "cancelled"}),
        "errorCode": str,
        "errorCategory": str,
        "operationId": str,
    },
    Kind.EXPORT_DELIVERED: {
        "container": str,
        "channel": str,
        "manifestSha256": str,
        "expiresAt": str,
        "permissions": str,
        "packageSha256": str,
        "part": str,
        "partCount": int,
        **_ACTOR,
    },
    Kind.EXTENSION_ASKED: {
        "askId": str,
        "days": int,
        "months": int,
        "reasonCode": str,
        "reasonSha256": str,
        **_ACTOR,
    },
    Kind.EXTENDED: {
        "askId": str,
        "previousDeadline": str,
        "deadline": str,
        "originalDeadline": str,
        "extensionDays": int,
        "reasonCode": str,
        "reasonSha256": str,
        **_ACTOR,
    },
    Kind.RETRIED: {
        "attempt": int,
        "previousPhase": str,
        "previousErrorCode": str,
        "container": str,
        "reasonSha256": str,
        **_ACTOR,
    },
    Kind.CALLBACK: {
        "eventType": str,
        "webhookId": str,
        "attempts": int,
        "httpStatus": int,
        "accepted": bool,
        "errorCode": str,
    },
    Kind.ERASED: {**_DELETION, "reasonSha256": str, **_ACTOR},
    Kind.RETENTION_DELETED: {**_DELETION, "retentionDays": int, "endedAt": str, **_ACTOR},
    Kind.HISTORY_PURGED: {
        "instancesDeleted": int,
        "retentionDays": int,
        # How the DSR ended by its own output, when its evidence did not say (``evidence``
        # false): the purge is then recorded with why it happened anyway.
        "evidence": bool,
        "endedPhase": frozenset({"completed", "failed", "timed_out", "cancelled"}),
        "endedAt": str,
        "errorCode": str,
        **_ACTOR,
    },
    Kind.PACKAGED: {
        "container": str,
        "packageSha256": str,
        "manifestSha256": str,
        "exportManifestSha256": str,
        "partCount": int,
        "fileCount": int,
        "totalBytes": int,
        "generation": int,
        "language": str,
        **_ACTOR,
    },
    Kind.PACKAGE_REFUSED: {
        "reasonCode": frozenset({"EXPORT_CHANGED"}),
        "added": int,
        "removed": int,
        "altered": int,
        "exportManifestSha256": str,
        **_ACTOR,
    },
    Kind.PACKAGE_FILE_WITHHELD: {
        "sha256": str,
        "reasonCode": frozenset({"OTHERS_RIGHTS", "LEGAL_PRIVILEGE", "NOT_SUBJECT_DATA"}),
        "previewSha256": str,
        "fileCount": int,
        **_ACTOR,
    },
    Kind.PACKAGE_REVIEWED: {
        "previewSha256": str,
        "withheldCount": int,
        "withheldHashes": int,
        "reasonCodes": str,
        **_ACTOR,
    },
}

#: What no string value may contain: an address (UPN, e-mail), a URL, a SAS signature.
_FORBIDDEN_TEXT: Final = (("@", "an address"), ("://", "a URL"), ("sig=", "a SAS signature"))
_RECORD_KEYS: Final = frozenset({"seq", "kind", "at", "requestId", "data", "prev", "hash"})
_HEX: Final = frozenset("0123456789abcdef")
_KINDS: Final = frozenset(kind.value for kind in Kind)


class EvidenceRefused(ValueError):
    """The record would carry something evidence may not: the message says what (never the
    value itself, which may be the personal data refused)."""


def canonical(document: object) -> bytes:
    """The one byte form of a JSON document: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _digest(body: Mapping[str, object]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class EvidenceRecord:
    """One record of a DSR's evidence log, as stored (``request_id`` is ``requestId``)."""

    seq: int
    kind: Kind
    at: str
    request_id: str
    data: Mapping[str, Value]
    prev: str
    hash: str

    @property
    def event_id(self) -> str | None:
        """The writer's idempotency key, when it gave one."""
        value = self.data.get(EVENT_ID)
        return value if isinstance(value, str) else None

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what ``hash`` is computed over."""
        return {
            "seq": self.seq,
            "kind": self.kind.value,
            "at": self.at,
            "requestId": self.request_id,
            "data": {
                key: dict(value) if isinstance(value, Mapping) else value
                for key, value in self.data.items()
            },
            "prev": self.prev,
        }

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object."""
        return {**self.body(), "hash": self.hash}

    def to_line(self) -> bytes:
        """The record's JSON-lines encoding: its canonical JSON and a newline."""
        return canonical(self.to_dict()) + b"\n"


def _checked_text(key: str, value: str) -> str:
    if len(value) > MAX_VALUE_LENGTH:
        raise EvidenceRefused(f"{key}: longer than {MAX_VALUE_LENGTH} characters")
    for needle, what in _FORBIDDEN_TEXT:
        if needle in value.lower():
            raise EvidenceRefused(f"{key}: looks like {what}; evidence carries pseudonymous ids")
    return value


def _checked_value(key: str, spec: FieldType, value: object) -> Value:
    if isinstance(spec, frozenset):
        if not isinstance(value, str) or value not in spec:
            raise EvidenceRefused(f"{key}: must be one of {sorted(spec)}")
        return value
    if isinstance(spec, _Counts):
        if not isinstance(value, Mapping) or not all(
            isinstance(name, str) and type(count) is int for name, count in value.items()
        ):
            raise EvidenceRefused(f"{key}: must be an object of names to counts")
        return MappingProxyType(
            {_checked_text(f"{key} (a name)", name): count for name, count in value.items()}
        )
    # Exact types: a bool is not an int, nor an int a bool.
    if spec is str and type(value) is str:
        return _checked_text(key, value)
    if (spec is int and type(value) is int) or (spec is bool and type(value) is bool):
        return value
    raise EvidenceRefused(f"{key}: must be {getattr(spec, '__name__', spec)}")


def checked_data(kind: Kind, data: Mapping[str, object]) -> Mapping[str, Value]:
    """``data`` as a record of ``kind`` may carry it: None values dropped, every other field
    allowed for the kind and of its type, no string that looks like personal data or a secret.
    Raises :class:`EvidenceRefused` otherwise."""
    allowed = FIELDS[kind]
    kept: dict[str, Value] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == EVENT_ID:
            kept[key] = _checked_value(key, str, value)
        elif key in allowed:
            kept[key] = _checked_value(key, allowed[key], value)
        else:
            raise EvidenceRefused(f"{key!r} is not a field of a {kind.value!r} record")
    return MappingProxyType(dict(sorted(kept.items())))


def _kind(raw: object) -> Kind:
    if isinstance(raw, str) and raw in _KINDS:
        return Kind(raw)
    raise EvidenceRefused("unknown record kind")


def _utc_text(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise EvidenceRefused("at: must be timezone-aware")
    return at.astimezone(UTC).isoformat()


def _canonical_id(request_id: str) -> str:
    try:
        return canonical_request_id(validate_request_id(request_id))
    except InvalidRequest:
        raise EvidenceRefused("requestId: not a valid request id") from None


def chain(
    previous: EvidenceRecord | None,
    kind: Kind | str,
    at: datetime,
    request_id: str,
    data: Mapping[str, object],
) -> EvidenceRecord:
    """The record that follows ``previous`` (None: the first of a log).

    Raises :class:`EvidenceRefused` for a field the kind does not carry, a value that looks like
    personal data, a naive time, or a request id other than ``previous``'s.
    """
    record_kind = _kind(kind)
    canonical_id = _canonical_id(request_id)
    if previous is not None and previous.request_id != canonical_id:
        raise EvidenceRefused("requestId: differs from the log's")
    record = EvidenceRecord(
        seq=0 if previous is None else previous.seq + 1,
        kind=record_kind,
        at=_utc_text(at),
        request_id=canonical_id,
        data=checked_data(record_kind, data),
        prev=GENESIS if previous is None else previous.hash,
        hash="",
    )
    return _sealed(record)


def _sealed(record: EvidenceRecord) -> EvidenceRecord:
    return EvidenceRecord(
        record.seq,
        record.kind,
        record.at,
        record.request_id,
        record.data,
        record.prev,
        _digest(record.body()),
    )


class BrokenRecord(ValueError):
    """A line that is not an intact evidence record; the message says why."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise BrokenRecord("not JSON: a key appears twice")
    return document


def _no_constant(name: str) -> object:
    raise BrokenRecord(f"not JSON: {name} is not a number JSON allows")


def strict_json(line: str | bytes) -> object:
    """One line as JSON that a record's canonical form can be made of; :class:`BrokenRecord`
    (saying why) for anything else, never another exception: bytes that are not UTF-8 (or text
    holding a lone surrogate, as bytes read with ``surrogateescape`` do), ``NaN`` and
    ``Infinity`` (Python's reader takes them, RFC 8259 and :func:`canonical` do not), a key
    twice, or nesting so deep that the reader gives up (a record nests three levels).

    Every reader of a log goes through here, so a forged or damaged line is a broken record for
    the verifier to name, not a crash of whoever reads the log.
    """
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        text.encode("utf-8")
    except UnicodeError:
        raise BrokenRecord("not UTF-8") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except BrokenRecord:
        raise
    except RecursionError:
        raise BrokenRecord("not JSON: nested too deeply") from None
    except ValueError:
        raise BrokenRecord("not JSON") from None
    try:
        canonical(document)
    except UnicodeEncodeError:  # "\ud800": valid JSON, but no UTF-8 text holds it
        raise BrokenRecord("not UTF-8: it escapes a lone surrogate") from None
    except RecursionError:  # pragma: no cover - the reader refuses deeper first
        raise BrokenRecord("not JSON: nested too deeply") from None
    return document


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _parse_at(value: object) -> str:
    if not isinstance(value, str):
        raise BrokenRecord("at: not a timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BrokenRecord("at: not a timestamp") from None
    if moment.utcoffset() != timedelta(0):
        raise BrokenRecord("at: not in UTC")
    return value


def parse_record(line: str | bytes) -> EvidenceRecord:
    """One line of a log as a record whose hash is intact; :class:`BrokenRecord` otherwise
    (never another exception, whatever the line holds)."""
    document = strict_json(line)
    if not isinstance(document, dict) or set(document) != _RECORD_KEYS:
        raise BrokenRecord("not an evidence record (its fields are not seq, kind, at, ...)")
    seq, data = document["seq"], document["data"]
    if type(seq) is not int or seq < 0:
        raise BrokenRecord("seq: not a record number")
    if not isinstance(data, dict):
        raise BrokenRecord("data: not an object")
    if not (_is_hash(document["prev"]) and _is_hash(document["hash"])):
        raise BrokenRecord("prev or hash: not a SHA-256")
    if not isinstance(document["requestId"], str) or not isinstance(document["kind"], str):
        raise BrokenRecord("not an evidence record (kind or requestId is not text)")
    body = {key: value for key, value in document.items() if key != "hash"}
    if _digest(body) != document["hash"]:
        raise BrokenRecord("hash mismatch: the record was edited")
    try:
        kind = _kind(document["kind"])
        record = EvidenceRecord(
            seq=seq,
            kind=kind,
            at=_parse_at(document["at"]),
            request_id=document["requestId"],
            data=checked_data(kind, data),
            prev=document["prev"],
            hash=document["hash"],
        )
        if _canonical_id(record.request_id) != record.request_id:
            raise EvidenceRefused("requestId: not in canonical form")
    except EvidenceRefused as exc:
        raise BrokenRecord(f"not a valid record: {exc}") from None
    return record


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: a whole chain of ``count`` records, or where it breaks.

    ``seq`` is the record number the broken line should have held (the count of intact records
    before it), ``line`` its 1-based line number, ``reason`` why it breaks the chain. ``head``
    is the hash of the last intact record (None for an empty log).
    """

    ok: bool
    count: int
    head: str | None = None
    seq: int | None = None
    line: int | None = None
    reason: str | None = None
    records: tuple[EvidenceRecord, ...] = field(default=(), repr=False, compare=False)

    def summary(self) -> str:
        """``OK: N records`` or ``BROKEN at record K (line L): why``."""
        if self.ok:
            return f"OK: {self.count} record{'' if self.count == 1 else 's'}"
        where = f" (line {self.line})" if self.line is not None else ""
        return f"BROKEN at record {self.seq}{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the evidence endpoint's ``verification``)."""
        result: dict[str, Any] = {"ok": self.ok, "records": self.count, "head": self.head}
        if not self.ok:
            result["broken"] = {"record": self.seq, "line": self.line, "reason": self.reason}
        result["summary"] = self.summary()
        return result


def verify(
    lines: Iterable[str | bytes], *, request_id: str | None = None, head: str | None = None
) -> Verification:
    """Check a log, line by line, and name the first record that breaks it.

    Blank lines are skipped (a log ends with a newline). A record breaks the chain when it is
    not JSON or not a record (:func:`strict_json`), when its hash does not match its content
    (edited), when its ``seq`` is not the next number (a record removed or moved), when its
    ``prev`` is not the hash of the record before (removed, reordered or spliced), when its
    request id is not the log's (``request_id`` when given, else the first record's), or when
    it carries a field its kind may not. The first record must be the DSR's ``received``: the
    intake writes it before the DSR starts, so a log without it, and an empty log, is not the
    whole log of a DSR (an empty log verified "OK" would vouch for nothing). With ``head``, the
    last record's hash must be it: a log cut short after an intact record is otherwise
    indistinguishable from a shorter log.
    """
    expected_id = _canonical_or_none(request_id)
    kept: list[EvidenceRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem = _problem(line, len(kept), kept[-1] if kept else None, expected_id)
        if isinstance(problem, str):
            return _broken(kept, number, problem)
        kept.append(problem)
        expected_id = expected_id or problem.request_id
    if not kept:
        return _broken(kept, None, f"empty: the log has no records (it opens with {_OPENING!r})")
    last = kept[-1].hash
    if head is not None and head != last:
        reason = f"the log ends at hash {last or GENESIS}, not at the expected head {head}"
        return _broken(kept, None, f"truncated: {reason}")
    return Verification(ok=True, count=len(kept), head=last, records=tuple(kept))


#: The kind of a log's first record.
_OPENING: Final = Kind.RECEIVED.value


def _canonical_or_none(request_id: str | None) -> str | None:
    return None if request_id is None else canonical_request_id(request_id)


def _problem(
    line: str | bytes, seq: int, previous: EvidenceRecord | None, request_id: str | None
) -> EvidenceRecord | str:
    try:
        record = parse_record(line)
    except BrokenRecord as exc:
        return str(exc)
    if record.seq > seq:
        return f"seq gap: expected record {seq}, found record {record.seq} (removed or moved)"
    if record.seq < seq:
        return f"out of order: expected record {seq}, found record {record.seq} (moved or repeated)"
    expected_prev = GENESIS if previous is None else previous.hash
    if record.prev != expected_prev:
        return f"prev mismatch: does not follow record {seq - 1} (removed or reordered)"
    if request_id is not None and record.request_id != request_id:
        return f"wrong request id: {record.request_id}, the log is {request_id}'s"
    if previous is None and record.kind is not Kind.RECEIVED:
        return (
            f"the log does not start with its {_OPENING!r} record "
            f"(it starts with a {record.kind.value!r} one)"
        )
    return record


def _broken(kept: Sequence[EvidenceRecord], line: int | None, reason: str) -> Verification:
    return Verification(
        ok=False,
        count=len(kept),
        head=kept[-1].hash if kept else None,
        seq=len(kept),
        line=line,
        reason=reason,
        records=tuple(kept),
    )


def generation_event_id(event_id: str, attempt: int) -> str:
    """The event id of a record written once per attempt of a DSR (``completed``,
    ``sas_revoked``, ``finished``): a retried DSR is a new generation whose records must not be
    taken for the earlier attempt's. The first attempt keeps the plain id (logs written before
    generations were numbered stay idempotent)."""
    return event_id if attempt <= 1 else f"{event_id}:attempt-{attempt}"


def find_event(records: Iterable[EvidenceRecord], event_id: str) -> EvidenceRecord | None:
    """The record written under ``event_id``, if one was: a retried writer's event is kept
    once."""
    return next((record for record in records if record.event_id == event_id), None)


def blob_name(request_id: str) -> str:
    """The log's name: the canonical request id (its alphabet is safe in blob names and URLs;
    ``:`` becomes ``~``, which ids never contain, so distinct ids keep distinct logs) and
    ``.jsonl``."""
    return _canonical_id(request_id).replace(":", "~") + ".jsonl"


def evidence_document(
    request_id: str, lines: Iterable[str | bytes], *, head: str | None = None
) -> dict[str, Any]:
    """What ``GET /api/exports/{requestId}/evidence`` answers: the records as stored (a line
    that is not a JSON object :func:`strict_json` reads, as its text, with what is not UTF-8
    replaced by U+FFFD so that the answer always serialises) and the verification result."""
    kept = [line for line in lines if line.strip()]
    records: list[object] = []
    for line in kept:
        try:
            document = strict_json(line)
        except BrokenRecord:
            document = None
        records.append(document if isinstance(document, dict) else _text(line))
    verification = verify(kept, request_id=request_id, head=head)
    return {
        "requestId": canonical_request_id(request_id),
        "records": records,
        "verification": verification.to_dict(),
    }


def _text(line: str | bytes) -> str:
    """A line as text that is valid Unicode (what is not UTF-8 becomes U+FFFD)."""
    raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def document_lines(document: Mapping[str, Any]) -> list[str]:
    """The log inside an :func:`evidence_document` (as downloaded from the API), one line per
    record, ready for :func:`verify`. A record that has no canonical form (``NaN``, a lone
    surrogate: a service or proxy that answered what no log holds) becomes a line that
    :func:`verify` names, never an exception."""
    records = document.get("records")
    if not isinstance(records, list):
        raise BrokenRecord("not an evidence document (no records)")
    return [_document_line(record) for record in records]


def _document_line(record: object) -> str:
    if not isinstance(record, dict):
        return str(record)
    try:
        return canonical(record).decode("utf-8")
    except ValueError:  # NaN or Infinity; UnicodeEncodeError, a lone surrogate
        return json.dumps(record, sort_keys=True, separators=(",", ":"))
    except RecursionError:
        return "(a record nested too deeply to read)"
