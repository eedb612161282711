"""An export is a long-running operation: accepted now, finished days later, polled meanwhile.

It stays ``notStarted`` for a short while, then ``running`` with a progress figure while the
product files arrive in the container a few at a time, and ends ``complete`` (or ``failed``
halfway, for a failing user, or when the SAS is revoked or the container deleted under it).
Time comes from the injected clock, so a three-day export can pass in seconds; an operation
moves only when polled or ticked, and then straight to where the clock says it is.

Graph outlives any one client, so the operations can be written out (``snapshot``) and read
back (``restore``) by a simulator that restarts: status, progress, the files already written,
and the SAS of an unfinished export (the service holds it until the export ends, then forgets
it; so does the snapshot).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import ContainerClient

from .export_files import PRODUCTS_LAYOUT, ExportFile, ExportLayout, content_of, files_of
from .redaction import log, storage_log, without_query
from .replies import iso

_START_FRACTION = 0.02  # share of the duration spent in notStarted
_FAIL_AT = 0.5  # progress at which an operation of a failing user fails


@dataclass(frozen=True)
class OperationView:
    """What tests may see of an operation: everything except the SAS."""

    id: str
    user_id: str
    status: str
    storage_location: str
    submitted_date_time: datetime
    completed_date_time: datetime | None
    progress: float
    files_written: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userId": self.user_id,
            "status": self.status,
            "storageLocation": self.storage_location,
            "submittedDateTime": iso(self.submitted_date_time),
            "completedDateTime": iso(self.completed_date_time),
            "progress": self.progress,
            "filesWritten": self.files_written,
        }


@dataclass
class _Operation:
    id: str
    user_id: str
    storage_location: str  # container URL without the SAS
    submitted: datetime
    manifest: tuple[ExportFile, ...]
    fails: bool
    sas_url: str = field(repr=False)
    status: str = "notStarted"
    completed: datetime | None = None
    progress: float = 0.0
    written: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> OperationView:
        return OperationView(
            id=self.id,
            user_id=self.user_id,
            status=self.status,
            storage_location=self.storage_location,
            submitted_date_time=self.submitted,
            completed_date_time=self.completed,
            progress=self.progress,
            files_written=self.written,
        )


class Operations:
    """Every accepted export, advanced on demand to the clock's present."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        duration: timedelta,
        seed: int,
        ca_bundle: str,
        layout: ExportLayout = PRODUCTS_LAYOUT,
    ) -> None:
        self._clock = clock
        self._layout = layout
        self._duration = duration
        self._seed = seed
        self._ca_bundle = ca_bundle
        self._lock = threading.Lock()
        self._operations: dict[str, _Operation] = {}
        self._by_user: Counter[str] = Counter()
        self._by_container: Counter[str] = Counter()

    def accept(
        self, op_id: str, user_id: str, submitted: datetime, location: str, *, fails: bool
    ) -> None:
        """Start an export into ``location`` (a container SAS URL, kept until it finishes)."""
        container_url = without_query(location)
        op = _Operation(
            id=op_id,
            user_id=user_id,
            storage_location=container_url,
            submitted=submitted,
            manifest=files_of(self._seed, user_id, self._layout),
            fails=fails,
            sas_url=location,
        )
        with self._lock:
            self._operations[op_id] = op
            self._by_user[user_id] += 1
            self._by_container[container_url] += 1

    def advance(self, op_id: str) -> OperationView | None:
        """The operation as of now (None if there is none), after writing what is due."""
        with self._lock:
            op = self._operations.get(op_id)
        if op is None:
            return None
        self._drive(op)
        return op.view()

    def tick(self) -> None:
        """Advance every unfinished operation to the clock's present (writing files)."""
        with self._lock:
            ops = [op for op in self._operations.values() if op.completed is None]
        for op in ops:
            self._drive(op)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every operation as JSON-ready data, the SAS of unfinished ones included.

        Read without each operation's lock (a drive may hold it across storage calls): fields
        are read one by one, so a snapshot taken mid-drive can lag a field behind another,
        and every drive is followed by a snapshot of its own, which is the one that stays.
        """
        with self._lock:
            ops = list(self._operations.values())
        return [
            {
                "id": op.id,
                "userId": op.user_id,
                "storageLocation": op.storage_location,
                "submitted": op.submitted.isoformat(),
                "fails": op.fails,
                "sasUrl": op.sas_url,
                "status": op.status,
                "completed": op.completed.isoformat() if op.completed else None,
                "progress": op.progress,
                "written": op.written,
            }
            for op in ops
        ]

    def restore(self, items: list[dict[str, Any]]) -> None:
        """Take back what ``snapshot`` wrote, replacing every operation held now."""
        operations: dict[str, _Operation] = {}
        for item in items:
            user_id = str(item["userId"])
            completed = item.get("completed")
            operations[str(item["id"])] = _Operation(
                id=str(item["id"]),
                user_id=user_id,
                storage_location=str(item["storageLocation"]),
                submitted=_aware(str(item["submitted"])),
                manifest=files_of(self._seed, user_id, self._layout),
                fails=bool(item["fails"]),
                sas_url=str(item.get("sasUrl") or ""),
                status=str(item["status"]),
                completed=_aware(str(completed)) if completed else None,
                progress=float(item["progress"]),
                written=int(item["written"]),
            )
        with self._lock:
            self._operations = operations
            self._by_user = Counter(op.user_id for op in operations.values())
            self._by_container = Counter(op.storage_location for op in operations.values())

    def views(self) -> list[OperationView]:
        with self._lock:
            return [op.view() for op in self._operations.values()]

    def view(self, op_id: str) -> OperationView:
        return self._get(op_id).view()

    def expected_files(self, op_id: str) -> dict[str, int]:
        return {f.path: f.size for f in self._get(op_id).manifest}

    def by_user(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_user)

    def by_container(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_container)

    def _get(self, op_id: str) -> _Operation:
        with self._lock:
            return self._operations[op_id]

    def _drive(self, op: _Operation) -> None:
        """Bring ``op`` to the state the clock says it is in, writing the files now due."""
        with op.lock:
            if op.completed is not None:
                return
            fraction = self._fraction(op, self._clock())
            if fraction is None:
                return
            target = min(fraction, _FAIL_AT) if op.fails else fraction
            due = math.ceil(target * len(op.manifest))
            try:
                self._write_files(op, due)
            except AzureError as error:
                if isinstance(error, HttpResponseError) and error.status_code in (403, 404):
                    # The SAS was revoked or the container deleted: this export cannot finish.
                    log.info("operation %s failed: storage said %s", op.id, error.status_code)
                    self._finish(op, "failed", self._clock())
                else:  # transient: try again on the next poll or tick
                    log.info("operation %s: write deferred (%s)", op.id, type(error).__name__)
                return
            if op.fails and fraction >= _FAIL_AT:
                self._finish(op, "failed", self._at(op, _FAIL_AT))
            elif fraction >= 1:
                self._finish(op, "complete", op.submitted + self._duration)
            else:
                op.status = "running"
                # Never backwards, even when a restarted host's clock resumes a little earlier.
                op.progress = max(op.progress, min(99.9, round(fraction * 100, 1)))

    def _fraction(self, op: _Operation, now: datetime) -> float | None:
        """None while notStarted, else how far through the running phase ``now`` is."""
        start = self._duration * _START_FRACTION
        elapsed = now - op.submitted
        if elapsed < start:
            return None
        return min(1.0, (elapsed - start) / (self._duration - start))

    def _at(self, op: _Operation, fraction: float) -> datetime:
        start = self._duration * _START_FRACTION
        return op.submitted + start + (self._duration - start) * fraction

    def _write_files(self, op: _Operation, due: int) -> None:
        if op.written >= due:
            return
        container = ContainerClient.from_container_url(
            op.sas_url, connection_verify=self._ca_bundle, retry_total=2, logger=storage_log
        )
        with container:
            for item in op.manifest[op.written : due]:
                data = content_of(self._seed, op.user_id, item)
                container.upload_blob(item.path, data, overwrite=True)
                op.written += 1

    @staticmethod
    def _finish(op: _Operation, status: str, when: datetime) -> None:
        op.status = status
        op.completed = when
        if status == "complete":
            op.progress = 100.0
        op.sas_url = ""  # nothing left to write: forget the secret


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return value
