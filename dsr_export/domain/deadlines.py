"""Legal response deadlines of a DSR: when it is due, when to warn, whether it is overdue.

The deadline is a legal obligation, so it is computed by the system from the request's receipt,
never typed by an operator. GDPR Art. 12(3) gives "one month of receipt": the same day of the
next month, or that month's last day when the day does not exist (Jan 31 -> Feb 28/29), counted
in the local time the receipt was stated in (so 31 Jan 23:30 +01:00 is a January receipt even
though it is 22:30 UTC). CCPA gives 45 calendar days. Other regimes are a number of days.

Everything here is pure: the current time is always passed in, which keeps the orchestrator
deterministic and the tests exact.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

#: RFC 3339 date-time with a mandatory offset: a legal deadline must not depend on a guess.
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
#: The longest period a request may ask for: longer than any regime we know of, short enough
#: that a typo (4500 days) is caught.
MAX_PERIOD_DAYS: Final = 366
CCPA_DAYS: Final = 45


@dataclass(frozen=True)
class Regulation:
    """How long the controller has to answer: one calendar month (GDPR) or a number of days."""

    name: str
    days: int | None = None  # None: one calendar month

    def to_json(self) -> str | dict[str, int]:
        """The form accepted in requests and carried in the orchestration input."""
        return self.name if self.days is None or self.name == "ccpa" else {"days": self.days}


GDPR: Final = Regulation("gdpr")
CCPA: Final = Regulation("ccpa", CCPA_DAYS)


def parse_regulation(raw: object) -> Regulation:
    """``"gdpr"`` (the default), ``"ccpa"``, ``{"days": N}`` or ``N``; ValueError otherwise."""
    if raw is None:
        return GDPR
    if isinstance(raw, str):
        match raw.strip().lower():
            case "gdpr":
                return GDPR
            case "ccpa":
                return CCPA
        raise ValueError('must be "gdpr", "ccpa", {"days": N} or a number of days')
    if isinstance(raw, Mapping) and set(raw) == {"days"}:
        raw = raw["days"]
    # bool is an int subclass; true is not "1 day".
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 1 <= raw <= MAX_PERIOD_DAYS:
            return Regulation("days", raw)
        raise ValueError(f"a number of days must be between 1 and {MAX_PERIOD_DAYS}")
    raise ValueError('must be "gdpr", "ccpa", {"days": N} or a number of days')


def parse_received_at(raw: str) -> datetime:
    """An RFC 3339 timestamp with its offset kept (the month is counted in that local time)."""
    if not _RFC3339.fullmatch(raw):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:00:00Z")
    text = raw.upper().replace("Z", "+00:00").replace(" ", "T")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not a valid date-time (check day, month and offset)") from None


def add_month(moment: datetime) -> datetime:
    """Same day and time next month, clamped to the month's last day."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def deadline(received_at: datetime, regulation: Regulation) -> datetime:
    """When the answer is due, in UTC."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must carry an offset")
    if regulation.days is None:
        due = add_month(received_at)
    else:
        due = received_at + timedelta(days=regulation.days)
    return due.astimezone(UTC)


def warning_at(due: datetime, lead_days: int) -> datetime:
    """When the deadline warning is due: ``lead_days`` before the deadline."""
    return due - timedelta(days=lead_days)


@dataclass(frozen=True)
class DeadlineView:
    """The deadline as seen at one moment: what the status document and callbacks show."""

    deadline: datetime
    days_left: int
    warning: bool
    overdue: bool

    def to_dict(self) -> dict[str, object]:
        """JSON form (camelCase, like every document the ticket sees)."""
        return {
            "deadline": self.deadline.isoformat(),
            "daysLeft": self.days_left,
            "deadlineWarning": self.warning,
            "overdue": self.overdue,
        }


def view(due: datetime, warn_at: datetime | None, now: datetime) -> DeadlineView:
    """The deadline at ``now``.

    ``days_left`` is whole days rounded up: 12 hours left reads 1 (a ticket should not show 0
    while the answer is still on time); 0 or less once overdue, -N when more than N whole days
    late.
    """
    days_left = math.ceil((due - now) / timedelta(days=1))
    return DeadlineView(
        deadline=due,
        days_left=days_left,
        warning=warn_at is not None and now >= warn_at and now < due,
        overdue=now >= due,
    )
