"""Microsoft's documented quotas for exportPersonalData and dataPolicyOperation, on Graph's clock.

Microsoft Graph "service-specific throttling limits", section "Identity and access data policy
operation service limits" (microsoftgraph/microsoft-graph-docs-contrib,
``concepts/throttling-limits.md``), per tenant:

- ``POST .../exportPersonalData``: 1,000 requests per day for any subject, and 100 per subject
  per day;
- any other request on ``dataPolicyOperation`` (the polls): 10,000 per hour;
- "The resources listed earlier do not return a Retry-After header on 429 Too Many Requests
  responses."

Two things the page does not say are knobs here, so a client can be tested under either reading:
whether "day" (and "hour") is a rolling window or a calendar period in UTC, and whether a request
refused on quota counts against the quota. Their defaults are the stricter readings (a rolling
window, refused requests count): a client that keeps under a rolling window keeps under every
calendar day too, and one that does not waste refused calls loses nothing if they are free.

The counters run on the simulator's clock, so a fast clock passes a day of quota in seconds of
test time, and they are Graph's state (kept across a restart with the rest, see
``GraphSimulator``), unlike faults. Every request that reaches the check counts (the page speaks
of requests), whatever the answer after it: a submit later refused as ``InvalidInput`` still
spent its place.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from .replies import GraphError

Window = Literal["rolling", "calendar"]
_WINDOWS: Final = ("rolling", "calendar")
DAY: Final = timedelta(days=1)
HOUR: Final = timedelta(hours=1)
#: Subjects tracked before those idle for a day are dropped.
_SUBJECTS_KEPT: Final = 1000


@dataclass
class Quotas:
    """The quota knobs, each defaulting to the documented value (None: no limit).

    ``window``: ``rolling`` (the last 24 hours, the last hour) or ``calendar`` (the UTC day, the
    clock hour); ``refused_count``: a request answered 429 on quota is counted like any other.
    Neither is documented; the defaults are the stricter readings.
    """

    submits_per_day: int | None = 1000
    submits_per_subject_per_day: int | None = 100
    polls_per_hour: int | None = 10_000
    window: Window = "rolling"
    refused_count: bool = True

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quotas:
        quotas = cls()
        for name, value in data.items():
            setattr(quotas, name, _coerce(name, value))
        return quotas


class _Counter:
    """Requests in one window: (moment, count) buckets, oldest first, equal moments merged."""

    def __init__(self) -> None:
        self.buckets: deque[list[Any]] = deque()

    def count(self, since: datetime) -> int:
        return sum(n for moment, n in self.buckets if moment >= since)

    def add(self, now: datetime, count: int = 1) -> None:
        if self.buckets and self.buckets[-1][0] == now:
            self.buckets[-1][1] += count
        else:
            self.buckets.append([now, count])

    def prune(self, before: datetime) -> None:
        while self.buckets and self.buckets[0][0] < before:
            self.buckets.popleft()

    def to_json(self) -> list[list[Any]]:
        return [[moment.isoformat(), n] for moment, n in self.buckets]

    @classmethod
    def from_json(cls, items: list[list[Any]]) -> _Counter:
        counter = cls()
        for moment, n in items:
            value = datetime.fromisoformat(str(moment))
            if value.tzinfo is None:
                raise ValueError(f"timestamp without a time zone: {moment!r}")
            counter.buckets.append([value, int(n)])
        return counter


class QuotaLedger:
    """The tenant's counters against ``Quotas``; ``charge_*`` counts a request or refuses it."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.quotas = Quotas()
        self._submits = _Counter()
        self._by_subject: dict[str, _Counter] = {}
        self._polls = _Counter()

    def set(self, **changes: Any) -> Quotas:
        """Change some knobs at once; unknown names and ill-typed values are refused."""
        values = {name: _coerce(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in values.items():
                setattr(self.quotas, name, value)
            return dataclasses.replace(self.quotas)

    def reset(self) -> None:
        """The documented quotas and no request counted: a fresh tenant."""
        with self._lock:
            self.quotas = Quotas()
            self._submits, self._by_subject, self._polls = _Counter(), {}, _Counter()

    def charge_submit(self, subject: str) -> None:
        """Count one ``exportPersonalData`` for ``subject``, or raise the quota's 429."""
        now = self._clock()
        subject = subject.lower()
        with self._lock:
            quotas = self.quotas
            since = self._since(now, DAY)
            self._submits.prune(now - DAY)
            by_subject = self._by_subject.setdefault(subject, _Counter())
            by_subject.prune(now - DAY)
            refused = None
            if _over(quotas.submits_per_day, self._submits.count(since)):
                refused = f"{quotas.submits_per_day} export requests per day for the tenant"
            elif _over(quotas.submits_per_subject_per_day, by_subject.count(since)):
                per_subject = quotas.submits_per_subject_per_day
                refused = f"{per_subject} export requests per day for one user"
            if refused is None or quotas.refused_count:
                self._submits.add(now)
                by_subject.add(now)
            self._forget_idle(now)
        if refused is not None:
            raise _quota_error(refused)

    def charge_poll(self) -> None:
        """Count one ``dataPolicyOperation`` request, or raise the quota's 429."""
        now = self._clock()
        with self._lock:
            quotas = self.quotas
            self._polls.prune(now - HOUR)
            refused = _over(quotas.polls_per_hour, self._polls.count(self._since(now, HOUR)))
            if not refused or quotas.refused_count:
                self._polls.add(now)
        if refused:
            raise _quota_error(f"{quotas.polls_per_hour} data policy operation requests per hour")

    def spend(self, *, submits: int = 0, subject: str | None = None, polls: int = 0) -> None:
        """Count requests as if they had arrived now, unchecked: a tenant that has already used
        this much (a test's starting point, without sending thousands of requests)."""
        now = self._clock()
        with self._lock:
            if submits:
                self._submits.add(now, submits)
                if subject is not None:
                    self._by_subject.setdefault(subject.lower(), _Counter()).add(now, submits)
            if polls:
                self._polls.add(now, polls)

    def usage(self) -> dict[str, Any]:
        """What counts now against each quota (in the current window)."""
        now = self._clock()
        with self._lock:
            day, hour = self._since(now, DAY), self._since(now, HOUR)
            subjects = {name: c.count(day) for name, c in self._by_subject.items()}
            return {
                "submits": self._submits.count(day),
                "submitsBySubject": {name: n for name, n in subjects.items() if n},
                "polls": self._polls.count(hour),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "quotas": self.quotas.to_json(),
                "submits": self._submits.to_json(),
                "bySubject": {name: c.to_json() for name, c in self._by_subject.items()},
                "polls": self._polls.to_json(),
            }

    def restore(self, data: dict[str, Any]) -> None:
        quotas = Quotas.from_json(dict(data["quotas"]))
        submits = _Counter.from_json(data["submits"])
        by_subject = {str(k): _Counter.from_json(v) for k, v in dict(data["bySubject"]).items()}
        polls = _Counter.from_json(data["polls"])
        with self._lock:
            self.quotas, self._submits, self._polls = quotas, submits, polls
            self._by_subject = by_subject

    def _since(self, now: datetime, length: timedelta) -> datetime:
        """The start of the window ``now`` falls in (exclusive of ``now - length`` if rolling)."""
        if self.quotas.window == "rolling":
            return now - length + timedelta(microseconds=1)
        utc = now.astimezone(UTC)
        if length == DAY:
            return utc.replace(hour=0, minute=0, second=0, microsecond=0)
        return utc.replace(minute=0, second=0, microsecond=0)

    def _forget_idle(self, now: datetime) -> None:
        """Drop subjects with nothing in the last day, so the ledger does not grow forever."""
        if len(self._by_subject) <= _SUBJECTS_KEPT:
            return
        for name, counter in list(self._by_subject.items()):
            counter.prune(now - DAY)
            if not counter.buckets:
                del self._by_subject[name]


def _over(limit: int | None, used: int) -> bool:
    return limit is not None and used >= limit


def _quota_error(what: str) -> GraphError:
    """429 ``TooManyRequests`` and, as the documentation says of these resources, no
    Retry-After."""
    return GraphError(429, "TooManyRequests", f"Too many requests: the quota is {what}.")


def _coerce(name: str, value: Any) -> Any:
    """Check a knob from the admin route, so a typo fails there and not in a request later."""
    if name not in {f.name for f in dataclasses.fields(Quotas)}:
        raise ValueError(f"unknown quota knob {name!r}")
    if name == "window":
        if value not in _WINDOWS:
            raise ValueError(f"window must be one of {list(_WINDOWS)}")
        return value
    if name == "refused_count":
        if not isinstance(value, bool):
            raise TypeError(f"{name}: {value!r} is not a valid value")
        return value
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{name}: {value!r} is not a valid value (a count, or null: no limit)")
    return value
