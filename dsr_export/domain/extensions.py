"""Extending a DSR's legal deadline, within what its regulation allows.

GDPR Art. 12(3): the month "may be extended by two further months where necessary, taking into
account the complexity and number of the requests". We count the two months from the original
deadline, in the local time the receipt was stated in, clamped to the month's last day like the
first month (31 Jan -> 28 Feb -> 28 Apr): of the two readings (from the deadline, or three months
from the receipt, 30 Apr) it is never the later one, so an extension never claims more than the
law gives. Several extensions are allowed as long as the total stays within the cap.

CCPA (Cal. Civ. Code 1798.130(a)(2)): the 45 days "may be extended once by an additional 45
days when reasonably necessary": one extension, at most 45 days, in days only.

A ``{"days": N}`` regulation (another regime) may be extended by at most the days an operator
configured (``CUSTOM_EXTENSION_MAX_DAYS``, 0 by default: no extension until someone says what
that regime allows).

Pure: every moment is passed in.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from dsr_export.domain.deadlines import CCPA_DAYS, Regulation

#: GDPR's further months.
GDPR_EXTENSION_MONTHS: Final = 2
#: Why a deadline was extended: the Art. 12(3) grounds, and "other" (the text says more).
REASON_CODES: Final = frozenset({"complexity", "number_of_requests", "other"})


class ExtensionRefused(ValueError):
    """The extension is not allowed; ``pointer`` names the field at fault (RFC 6901)."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


@dataclass(frozen=True)
class ExtensionAsk:
    """What an operator asked for: ``days`` or ``months`` (exactly one), and why."""

    days: int | None = None
    months: int | None = None
    reason_code: str = "other"
    #: SHA-256 of the reason's text: the ticket keeps the words, the evidence their hash.
    reason_sha256: str | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ExtensionAsk:
        """From the request body; :class:`ExtensionRefused` naming the field otherwise."""
        days = _whole(payload.get("days"), "days")
        months = _whole(payload.get("months"), "months")
        if (days is None) == (months is None):
            raise ExtensionRefused("/days", "give exactly one of days or months")
        code = payload.get("reasonCode", "other")
        if not isinstance(code, str) or code not in REASON_CODES:
            raise ExtensionRefused(
                "/reasonCode", f"must be one of {', '.join(sorted(REASON_CODES))}"
            )
        reason = payload.get("reason")
        digest = hashlib.sha256(reason.encode()).hexdigest() if isinstance(reason, str) else None
        return cls(days=days, months=months, reason_code=str(code), reason_sha256=digest)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (the external event the orchestrator applies)."""
        body = {
            "days": self.days,
            "months": self.months,
            "reasonCode": self.reason_code,
            "reasonSha256": self.reason_sha256,
        }
        return {key: value for key, value in body.items() if value is not None}

    @classmethod
    def from_dict(cls, raw: object) -> ExtensionAsk:
        """Read the wire form back (lenient: an unknown field is ignored)."""
        data = raw if isinstance(raw, Mapping) else {}
        return cls(
            days=data.get("days"),
            months=data.get("months"),
            reason_code=str(data.get("reasonCode", "other")),
            reason_sha256=data.get("reasonSha256"),
        )


def _whole(value: object, name: str) -> int | None:
    """A whole number from 1 to 366, as JSON has it (``30`` or ``30.0``; ``true`` is not one)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 366:
        raise ExtensionRefused(f"/{name}", "must be a whole number from 1 to 366")
    return value


def add_months(moment: datetime, months: int) -> datetime:
    """Same day and time ``months`` later, clamped to that month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def cap(
    regulation: Regulation, original: datetime, received_at: datetime, custom_max_days: int
) -> datetime:
    """The latest deadline the regulation allows (``original`` is the unextended one)."""
    if regulation.days is None:  # GDPR: months, counted in the receipt's local time
        local = original.astimezone(received_at.tzinfo)
        return add_months(local, GDPR_EXTENSION_MONTHS).astimezone(original.tzinfo)
    if regulation.name == "ccpa":
        return original + timedelta(days=CCPA_DAYS)
    return original + timedelta(days=custom_max_days)


def extended(
    ask: ExtensionAsk,
    *,
    regulation: Regulation,
    received_at: datetime,
    original: datetime,
    current: datetime,
    earlier: Sequence[object],
    custom_max_days: int,
) -> datetime:
    """The new deadline ``ask`` gives, or :class:`ExtensionRefused` saying why not.

    ``current`` is the deadline now in force (``original`` once extended ``len(earlier)``
    times).
    """
    pointer = "/days" if ask.days is not None else "/months"
    if regulation.name == "ccpa":
        if earlier:
            raise ExtensionRefused(pointer, "CCPA allows one extension, and this DSR has had it")
        if ask.months is not None:
            raise ExtensionRefused("/months", "a CCPA deadline is extended in days (at most 45)")
    if regulation.name == "days" and custom_max_days == 0:
        raise ExtensionRefused(
            pointer,
            "this regulation's deadline cannot be extended "
            "(CUSTOM_EXTENSION_MAX_DAYS is 0; set it to what that regime allows)",
        )
    if ask.months is not None:
        if regulation.days is not None:
            raise ExtensionRefused("/months", "a deadline counted in days is extended in days")
        local = current.astimezone(received_at.tzinfo)
        new = add_months(local, ask.months).astimezone(current.tzinfo)
    else:
        assert ask.days is not None
        new = current + timedelta(days=ask.days)
    limit = cap(regulation, original, received_at, custom_max_days)
    if new > limit:
        law = {
            "gdpr": "GDPR Art. 12(3) allows two further months",
            "ccpa": "CCPA allows one extension of at most 45 days",
        }.get(regulation.name, f"this regulation allows {custom_max_days} more days")
        raise ExtensionRefused(
            pointer, f"{law}: the deadline can move to {limit.isoformat()} at the latest"
        )
    return new


def whole_days(before: datetime, after: datetime) -> int:
    """The extension in whole days, rounded up (what the evidence and the ticket show)."""
    seconds = (after - before).total_seconds()
    return int(-(-seconds // 86400))
