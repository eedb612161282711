"""The evidence logs: one append blob per DSR in a container kept apart from the exports.

Only ever appended to. In Azure the container has version-level immutability with a time-based
retention policy that allows protected append writes, and the app's role can append but not
delete or overwrite; this adapter keeps to that by construction: it creates a log only if none
exists (``If-None-Match: *``) and writes only with ``append_block`` at the position it last
read (``appendpos_condition``), never with an upload, an overwrite or a delete.

The append position is what keeps one chain under concurrent writers (two activities, two
workers, a Durable retry racing the first attempt): a writer whose view of the log is stale
gets ``412 AppendPositionConditionNotMet``, reads the tail again and chains onto it. The same
read makes writes idempotent: a record whose ``eventId`` is already in the log is not written
twice, and a record that is already there byte for byte (an append whose answer was lost) is
taken as written.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from dsr_export.adapters.failures import logged_retry
from dsr_export.domain import evidence, pacing
from dsr_export.domain.evidence import EvidenceRecord, Kind, Verification
from dsr_export.domain.evidence_entries import Entry
from dsr_export.domain.logs import log_event

#: The evidence container's default name. It can never be an export container's name (those end
#: in a hash of the request id), but it shares their ``dsr-`` prefix: keep the logs in an account
#: of their own, out of reach of the export account's delete-everything lifecycle rule.
EVIDENCE_CONTAINER: Final = "dsr-evidence"
#: How many times a writer re-reads the tail after losing the append position to another.
APPEND_ATTEMPTS: Final = pacing.EVIDENCE_APPEND_ATTEMPTS
_BACKOFF_SECONDS: Final = pacing.EVIDENCE_APPEND_STEP_SECONDS
#: How many logs' ends a process remembers (the most recently written); the others are read.
_CACHED_LOGS: Final = 256


class EvidenceLogError(RuntimeError):
    """The log cannot be appended to: its tail is not an intact record, or other writers kept
    winning the append position."""


@dataclass
class _Tail:
    """What a writer knows of one log: its length in bytes and its records."""

    length: int = 0
    records: list[EvidenceRecord] = field(default_factory=list)

    @property
    def last(self) -> EvidenceRecord | None:
        return self.records[-1] if self.records else None


class EvidenceLog:
    """Append, read and verify the evidence logs of DSRs."""

    def __init__(
        self,
        service_or_container: BlobServiceClient | ContainerClient,
        container: str = EVIDENCE_CONTAINER,
        *,
        prefix_of: Callable[[str], str] | None = None,
    ) -> None:
        """``service_or_container``: the account (the log container is ``container`` in it) or
        the log container itself (``container`` is then ignored). ``prefix_of`` names the blob
        prefix of a DSR's log (``TENANCY=multi``: its tenant's ``evidencePrefix``, so each
        tenant's chains lie apart); none: every log at the container's root, as always."""
        self._prefix_of = prefix_of
        if isinstance(service_or_container, ContainerClient):
            self._container = service_or_container
        else:
            self._container = service_or_container.get_container_client(container)
        self._lock = threading.Lock()
        self._tails: dict[str, _Tail] = {}
        self._container_ready = False

    @classmethod
    def for_account(
        cls,
        blob_endpoint: str,
        credential: TokenCredential,
        *,
        prefix_of: Callable[[str], str] | None = None,
    ) -> EvidenceLog:
        """The logs in their own account, reached with the app's identity (that account allows
        no shared key: the identity's role can append and read, never delete)."""
        return cls(
            BlobServiceClient(
                blob_endpoint, credential=credential, retry_policy=logged_retry("evidence")
            ),
            prefix_of=prefix_of,
        )

    @property
    def container_name(self) -> str:
        """The container the logs are in."""
        return str(self._container.container_name)

    def _blob_name(self, request_id: str) -> str:
        """The DSR's log: ``{ID}.jsonl``, under its tenant's prefix when it has one."""
        name = evidence.blob_name(request_id)
        prefix = self._prefix_of(request_id) if self._prefix_of is not None else ""
        return f"{prefix}/{name}" if prefix else name

    # -- writing --------------------------------------------------------------------------------

    def write(self, request_id: str, entry: Entry, at: datetime) -> EvidenceRecord:
        """Record one typed entry (:mod:`dsr_export.domain.evidence_entries`): ``append`` with
        the entry's kind and data, so no writer unpacks an entry by hand."""
        return self.append(request_id, entry.KIND, at, entry.data())

    def append(
        self, request_id: str, kind: Kind | str, at: datetime, data: Mapping[str, object]
    ) -> EvidenceRecord:
        """Record one event in the DSR's log and return its record.

        With an ``eventId`` in ``data``, an event already in the log under that id is returned
        as it was written, and nothing is appended. Raises
        :class:`~dsr_export.domain.evidence.EvidenceRefused` for data evidence may not carry,
        :class:`EvidenceLogError` when the log cannot be appended to.
        """
        name = self._blob_name(request_id)
        event_id = data.get(evidence.EVENT_ID)
        evidence.chain(None, kind, at, request_id, data)  # refuse bad data before any I/O
        self._ensure_container()
        with self._lock:
            tail = self._tails.get(name)
        for attempt in range(APPEND_ATTEMPTS):
            if tail is None:
                tail = self._read_tail(name)
            if isinstance(event_id, str):
                earlier = evidence.find_event(tail.records, event_id)
                if earlier is not None:
                    return _same_kind(earlier, kind)
            record = evidence.chain(tail.last, kind, at, request_id, data)
            line = record.to_line()
            if self._append_at(name, tail.length, line):
                self._remember(name, _Tail(tail.length + len(line), [*tail.records, record]))
                log_event(
                    "evidence_recorded",
                    request_id=record.request_id,
                    kind=record.kind.value,
                    seq=record.seq,
                )
                return record
            tail = self._read_tail(name)
            if any(written.hash == record.hash for written in tail.records):
                return record  # our own append, whose answer was lost and then retried
            jitter = random.random()  # noqa: S311 - spreads racing writers, not a secret
            time.sleep(pacing.evidence_append_pause(attempt, jitter, _BACKOFF_SECONDS))
        raise EvidenceLogError(
            f"could not append to {name}: other writers kept moving its end "
            f"({APPEND_ATTEMPTS} attempts)"
        )

    def _append_at(self, name: str, position: int, line: bytes) -> bool:
        """Append ``line`` if the log is still ``position`` bytes long; False if it is not."""
        blob = self._container.get_blob_client(name)
        if position == 0:
            with _made_already():
                blob.create_append_blob(
                    content_settings=ContentSettings(content_type=evidence.MEDIA_TYPE),
                    match_condition=MatchConditions.IfMissing,  # If-None-Match: *
                )
        try:
            blob.append_block(line, appendpos_condition=position)
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True

    def _remember(self, name: str, tail: _Tail) -> None:
        with self._lock:
            self._tails.pop(name, None)
            self._tails[name] = tail
            while len(self._tails) > _CACHED_LOGS:
                del self._tails[next(iter(self._tails))]

    def _read_tail(self, name: str) -> _Tail:
        """Read the log and remember it. Its last record must be intact (it is what the next
        one chains onto); a broken record before it is left for :meth:`verify` to name, so
        later events are still recorded."""
        content = self._download(name)
        lines = [line for line in content.split(b"\n") if line.strip()]
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(evidence.parse_record(line))
            except evidence.BrokenRecord as exc:
                if number == len(lines):
                    raise EvidenceLogError(f"{name}: its last record is broken: {exc}") from None
        tail = _Tail(len(content), records)
        self._remember(name, tail)
        return tail

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        # In Azure the container is the deployment's (infra/), and the app's role may not
        # create containers: a refusal means "made by someone else", and the append says
        # whether the log can be written.
        with _made_already():
            self._container.create_container(metadata={"purpose": "dsr-evidence"})
        self._container_ready = True

    # -- reading --------------------------------------------------------------------------------

    def _download(self, name: str) -> bytes:
        try:
            return bytes(self._container.get_blob_client(name).download_blob().readall())
        except ResourceNotFoundError:
            return b""

    def read(self, request_id: str) -> list[str]:
        """The DSR's log as stored, one string per line (empty when it has none).

        Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``), not
        replaced: the verifier then names such a line "not UTF-8" rather than "edited", and
        :func:`~dsr_export.domain.evidence.evidence_document` shows it with U+FFFD.
        """
        content = self._download(self._blob_name(request_id))
        return [
            line.decode("utf-8", "surrogateescape") for line in content.split(b"\n") if line.strip()
        ]

    def verify(self, request_id: str) -> Verification:
        """Read the DSR's log and check its chain (see :func:`evidence.verify`): a log that is
        empty or does not open with the DSR's ``received`` record is broken, and a line that is
        no record's JSON is named, never raised."""
        return evidence.verify(self.read(request_id), request_id=request_id)


@contextlib.contextmanager
def _made_already() -> Iterator[None]:
    """Creating what exists is no error here: ``409``/``412`` (it exists), or ``403`` (a role
    that may append but not create, in Azure where the deployment made it); the append that
    follows says whether the log can be written."""
    try:
        yield
    except (ResourceExistsError, ResourceModifiedError):
        return
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise


def _same_kind(record: EvidenceRecord, kind: Kind | str) -> EvidenceRecord:
    if record.kind.value != str(kind):
        raise evidence.EvidenceRefused(
            f"eventId already names a {record.kind.value!r} record, not a {kind!s} one"
        )
    return record
