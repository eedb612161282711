"""``dsrctl evidence ID``: the DSR's evidence log, verified here as well as by the service.

The service answers the records as stored and its own verification; the CLI checks the hash
chain again with the domain's verifier (:func:`dsr_export.domain.evidence.verify`), so a
service (or a proxy) that answered ``ok`` over a broken log is caught. Either one finding the
chain broken fails the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dsr_export.domain import evidence


@dataclass(frozen=True)
class Checked:
    """The local verification and what the service said."""

    local: evidence.Verification | None
    local_error: str | None
    service: Mapping[str, Any] | None

    @property
    def service_ok(self) -> bool | None:
        return None if self.service is None else self.service.get("ok") is True

    @property
    def ok(self) -> bool:
        return self.local is not None and self.local.ok and self.service_ok is not False

    def lines(self) -> list[str]:
        local = self.local.summary() if self.local is not None else f"BROKEN: {self.local_error}"
        lines = [f"verified here: {local}"]
        if self.local is not None and self.local.head:
            lines.append(f"head: {self.local.head}")
        if self.service is not None:
            lines.append(f"service says: {self.service.get('summary') or self.service}")
            if self.service_ok is True and self.local is not None and not self.local.ok:
                lines.append("the service's verification disagrees with this one: BROKEN")
        return lines


def check(document: Mapping[str, Any], request_id: str, *, head: str | None = None) -> Checked:
    """Verify the records of an evidence document as the log of ``request_id``."""
    service = document.get("verification")
    service = service if isinstance(service, Mapping) else None
    try:
        lines = evidence.document_lines(document)
    except evidence.BrokenRecord as exc:
        return Checked(None, str(exc), service)
    try:
        result = evidence.verify(lines, request_id=request_id, head=head)
    except ValueError as exc:  # an id that is not a request id at all
        return Checked(None, str(exc), service)
    return Checked(result, None, service)


def rows(document: Mapping[str, Any]) -> list[list[str]]:
    """One table row per record: seq, time, kind, its data as ``name=value``."""
    listed: list[list[str]] = []
    records = document.get("records")
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, Mapping):
            listed.append(["?", "-", "(not a record)", str(record)[:80]])
            continue
        data = record.get("data")
        pairs = (
            " ".join(f"{name}={value}" for name, value in sorted(data.items()))
            if isinstance(data, Mapping)
            else str(data)
        )
        listed.append(
            [str(record.get("seq")), str(record.get("at")), str(record.get("kind")), pairs]
        )
    return listed
