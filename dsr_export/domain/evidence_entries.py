"""The records the app writes to a DSR's evidence, one typed constructor per kind.

:mod:`dsr_export.domain.evidence` says what each kind of record may carry (``FIELDS``) and
checks it when the record is chained; these classes are how the writers build one, so a
misspelt field, a field of the wrong kind or a forgotten event id is a type error at the
call site, not a refusal at run time (tests/unit/test_evidence_entries.py checks every field
here is one its kind may carry). The wire names are the fields' names in camelCase; a field
left ``None`` is not written.

Pure: no I/O; writers hand an entry to the evidence log's ``write``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from dsr_export.domain.evidence import EVENT_ID, Kind


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One record to write: its kind and its data, keyed by ``event_id`` so a writer that runs
    again (an activity's retry) appends nothing twice."""

    KIND: ClassVar[Kind]
    event_id: str

    def data(self) -> dict[str, object]:
        """The record's data as the evidence log takes it."""
        data: dict[str, object] = {EVENT_ID: self.event_id}
        for item in fields(self):
            if item.name != "event_id":
                data[_camel(item.name)] = getattr(self, item.name)
        return data


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acted, by pseudonymous id (an object id, an application id, ``retention``)."""

    actor_kind: str | None = None
    actor_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Received(Entry):
    KIND: ClassVar[Kind] = Kind.RECEIVED
    source: str
    regulation: str
    regulation_days: int | None
    received_at: str | None
    deadline: str | None
    submitter_kind: str | None
    submitter_id: str | None
    submitter_tenant_id: str | None
    user_object_id: str | None
    #: A correction's: the ``received`` record it replaces (the race its writer won).
    supersedes_seq: int | None = None


@dataclass(frozen=True, kw_only=True)
class Submitted(Entry):
    KIND: ClassVar[Kind] = Kind.SUBMITTED
    operation_id: str | None
    container: str
    sas_mode: str
    sas_expiry: str
    user_object_id: str | None


@dataclass(frozen=True, kw_only=True)
class SubmitRecovered(Entry):
    KIND: ClassVar[Kind] = Kind.SUBMIT_RECOVERED
    operation_id: str | None
    container: str


@dataclass(frozen=True, kw_only=True)
class GraphStatusChanged(Entry):
    KIND: ClassVar[Kind] = Kind.GRAPH_STATUS
    operation_id: str | None
    graph_status: str | None
    previous_status: str | None


@dataclass(frozen=True, kw_only=True)
class Completed(Entry):
    KIND: ClassVar[Kind] = Kind.COMPLETED
    operation_id: str | None
    container: str
    blob_count: int
    total_bytes: int
    products: Mapping[str, int]
    manifest_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class SasRevoked(Entry):
    KIND: ClassVar[Kind] = Kind.SAS_REVOKED
    container: str
    sas_mode: str
    revoked: bool
    sas_expiry: str | None


@dataclass(frozen=True, kw_only=True)
class Finished(Entry):
    KIND: ClassVar[Kind] = Kind.FINISHED
    phase: str
    error_code: str | None
    error_category: str | None
    operation_id: str | None


@dataclass(frozen=True, kw_only=True)
class ExportDelivered(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.EXPORT_DELIVERED
    container: str | None
    channel: str
    permissions: str
    expires_at: str
    manifest_sha256: str | None
    #: A package's delivery: the package, and which of its parts this link is for.
    package_sha256: str | None = None
    part: str | None = None
    part_count: int | None = None


@dataclass(frozen=True, kw_only=True)
class ExtensionAsked(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.EXTENSION_ASKED
    ask_id: str
    days: int | None
    months: int | None
    reason_code: str
    reason_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class Extended(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.EXTENDED
    ask_id: str | None
    previous_deadline: str
    deadline: str
    original_deadline: str
    extension_days: int
    reason_code: str
    reason_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class Retried(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.RETRIED
    attempt: int
    previous_phase: str
    previous_error_code: str | None
    container: str | None
    reason_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class CallbackSent(Entry):
    KIND: ClassVar[Kind] = Kind.CALLBACK
    event_type: str | None
    webhook_id: str
    http_status: int | None
    accepted: bool
    error_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeletionReceipt(Actor, Entry):
    """What was deleted (every container of the DSR), under which receipt."""

    receipt_id: str
    container: str
    container_count: int
    blob_count: int
    total_bytes: int
    manifest_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class Erased(DeletionReceipt):
    KIND: ClassVar[Kind] = Kind.ERASED
    reason_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class RetentionDeleted(DeletionReceipt):
    KIND: ClassVar[Kind] = Kind.RETENTION_DELETED
    retention_days: int | None
    ended_at: str | None


def deletion(
    kind: Kind,
    *,
    reason_sha256: str | None = None,
    retention_days: int | None = None,
    ended_at: str | None = None,
    **receipt: Any,
) -> Erased | RetentionDeleted:
    """The deletion receipt of ``kind`` (an operator's erase, or the retention run's), each
    with the fields its kind carries: ``receipt`` the fields of :class:`DeletionReceipt`."""
    if kind is Kind.ERASED:
        return Erased(reason_sha256=reason_sha256, **receipt)
    if kind is Kind.RETENTION_DELETED:
        return RetentionDeleted(retention_days=retention_days, ended_at=ended_at, **receipt)
    raise ValueError(f"{kind.value!r} is not a deletion")


@dataclass(frozen=True, kw_only=True)
class HistoryPurged(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.HISTORY_PURGED
    retention_days: int
    #: False when the DSR's evidence was short and its output's word was taken: the fields
    #: below then say how it ended.
    evidence: bool
    ended_phase: str | None = None
    ended_at: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class Packaged(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.PACKAGED
    container: str
    package_sha256: str
    manifest_sha256: str
    export_manifest_sha256: str
    part_count: int
    file_count: int
    total_bytes: int
    generation: int | None
    language: str | None


@dataclass(frozen=True, kw_only=True)
class PackageRefused(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.PACKAGE_REFUSED
    reason_code: str
    added: int | None
    removed: int | None
    altered: int | None
    export_manifest_sha256: str | None


@dataclass(frozen=True, kw_only=True)
class PackageFileWithheld(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.PACKAGE_FILE_WITHHELD
    sha256: str
    reason_code: str
    preview_sha256: str
    file_count: int


@dataclass(frozen=True, kw_only=True)
class PackageReviewed(Actor, Entry):
    KIND: ClassVar[Kind] = Kind.PACKAGE_REVIEWED
    preview_sha256: str
    withheld_count: int
    withheld_hashes: int
    reason_codes: str


#: Every kind of entry, for the test that holds them to the evidence's field list.
ENTRIES: tuple[type[Entry], ...] = (
    Received,
    Submitted,
    SubmitRecovered,
    GraphStatusChanged,
    Completed,
    SasRevoked,
    Finished,
    ExportDelivered,
    ExtensionAsked,
    Extended,
    Retried,
    CallbackSent,
    Erased,
    RetentionDeleted,
    HistoryPurged,
    Packaged,
    PackageRefused,
    PackageFileWithheld,
    PackageReviewed,
)
