"""Timer triggers: NCRONTAB schedules as the Functions host reads them.

The host uses NCrontab with seconds: `{second} {minute} {hour} {day} {month} {day-of-week}`.
`croniter` puts seconds last, so a small parser of the subset the app can use (`*`, `*/n`,
lists, ranges with steps, month and weekday names) is kept here instead. As in NCrontab, a
time matches only when *both* day-of-month and day-of-week match. A TimeSpan (`hh:mm:ss`)
schedule means "every interval", as on dedicated plans. Times are UTC (WEBSITE_TIME_ZONE is not
honoured).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devhost.triggers.common import (
    FunctionSpec,
    Invoker,
    log_invocation,
    new_invocation_id,
    resolve_app_setting,
)

log = logging.getLogger("devhost.functions")

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
#: (name, low, high, names mapped to numbers)
_FIELDS: Sequence[tuple[str, int, int, dict[str, int]]] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day-of-week", 0, 6, {d: i for i, d in enumerate(_DAYS)}),
)
#: A run this much later than its scheduled time is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=1)
_SEARCH_YEARS = 8  # enough for any "29 Feb on a Monday"-style schedule


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule; `next_after` is the only operation the host needs."""

    expression: str
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    interval: timedelta | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime), in UTC."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        moment = moment.astimezone(UTC)
        if self.interval is not None:
            return moment + self.interval
        t = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = t.replace(year=t.year + _SEARCH_YEARS, month=1, day=1)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif t.day not in self.days or (t.weekday() + 1) % 7 not in self.weekdays:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise ValueError(f"schedule {self.expression!r} never fires")


def parse_schedule(expression: str) -> Schedule:
    """Parses a six-field NCRONTAB expression (five fields are read as seconds = 0)."""
    text = expression.strip()
    span = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", text)
    if span:
        days, hours, minutes, seconds = (int(g or 0) for g in span.groups())
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ValueError(f"timer interval {expression!r} must be positive")
        return Schedule(expression, interval=interval)
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"NCRONTAB {expression!r} needs six fields: second minute hour day month day-of-week"
        )
    sets = [
        _parse_field(value, *spec, expression) for value, spec in zip(fields, _FIELDS, strict=True)
    ]
    schedule = Schedule(expression, sets[0], sets[1], sets[2], sets[3], sets[4], sets[5])
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # rejects "31 Feb"-style schedules
    return schedule


def _parse_field(
    value: str, name: str, low: int, high: int, names: dict[str, int], expression: str
) -> frozenset[int]:
    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ValueError(f"NCRONTAB {expression!r}: bad {name} value {token!r}")
        result = int(token)
        if name == "day-of-week" and result == 7:
            return 0
        if not low <= result <= high:
            raise ValueError(f"NCRONTAB {expression!r}: {name} {result} not in {low}-{high}")
        return result

    values: set[int] = set()
    for item in value.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"NCRONTAB {expression!r}: bad step in {item!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if end < start:
                raise ValueError(f"NCRONTAB {expression!r}: empty range {item!r}")
        else:
            start = number(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class TimerRunner:
    """Fires one timer function on its schedule, on its own thread, never overlapping."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker) -> None:
        self.spec = spec
        self.schedule = parse_schedule(resolve_app_setting(str(spec.trigger["schedule"])))
        self._run_on_startup = bool(spec.trigger.get("runOnStartup", False))
        self._invoker = invoker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: datetime | None = None
        self._running = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"devhost-timer-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def run_now(self) -> None:
        """Fire once now, on a thread of its own, never overlapping a scheduled run (the admin
        API's manual run: it answers at once, the function runs in the background)."""
        threading.Thread(
            target=self._fire_manually, name=f"devhost-timer-{self.spec.name}-manual", daemon=True
        ).start()

    def _fire_manually(self) -> None:
        self._fire(datetime.now(UTC), past_due=False)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("timer %s still running after %.0fs", self.spec.name, timeout_s)
            self._thread = None

    def _run(self) -> None:
        now = datetime.now(UTC)
        if self._run_on_startup:
            self._fire(now, past_due=False)
        scheduled = self.schedule.next_after(datetime.now(UTC))
        caught_up = False
        while not self._stop.wait(max(0.0, (scheduled - datetime.now(UTC)).total_seconds())):
            now = datetime.now(UTC)
            if now < scheduled:
                continue  # woke early (clock granularity)
            self._fire(scheduled, past_due=caught_up or now - scheduled > PAST_DUE_TOLERANCE)
            following = self.schedule.next_after(scheduled)
            now = datetime.now(UTC)
            if following <= now and not caught_up:
                scheduled, caught_up = following, True  # one late run for all missed ones
            else:
                scheduled = following if following > now else self.schedule.next_after(now)
                caught_up = False

    def _fire(self, scheduled: datetime, *, past_due: bool) -> None:
        with self._running:  # the host never runs one timer function twice at once
            self._fire_once(scheduled, past_due=past_due)

    def _fire_once(self, scheduled: datetime, *, past_due: bool) -> None:
        invocation_id = new_invocation_id()
        now = datetime.now(UTC)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": _iso(self._last) if self._last else None,
                "Next": _iso(self.schedule.next_after(scheduled)),
                "LastUpdated": _iso(now),
            },
            schedule={"AdjustForDST": True},
        )
        self._last = scheduled
        started = time.monotonic()
        status = "succeeded"
        try:
            self._invoker.invoke(self.spec, request, invocation_id)
        except Exception:
            status = "failed"
            log.exception(
                "timer function %s failed (invocation_id=%s)", self.spec.name, invocation_id
            )
        log_invocation(
            self.spec, status, time.monotonic() - started, invocation_id, past_due=past_due
        )
