"""The submit gate's pure logic: which DSR of a tenant may submit to Graph now.

Microsoft documents the export's quota (Microsoft Graph "service-specific throttling limits",
"Identity and access data policy operation service limits"): per tenant, **1,000**
``exportPersonalData`` a day, and a 429 **without Retry-After** once it is spent. It does not
say whether "a day" is a rolling 24 hours or a calendar day (UTC), nor whether a refused submit
counts. The gate therefore counts every submit it let through (refused or not) in a **rolling**
24-hour window: a submit that fits that window fits a calendar day too (the calendar day so far
is inside the last 24 hours), so the gate never lets through a submit that either reading of
the quota refuses.

Admission is in deadline order: among the DSRs waiting, earliest legal deadline first (ties:
earliest received, then request id). A DSR asks; it is let through when its rank among the
waiters is below the free slots, else it is told when to ask again: the moment the window
frees enough slots for its rank. A DSR is therefore never let through while one with an earlier
deadline waits (no inversion), and an idle gate lets a lone DSR through at once. A waiter that
does not come back while other waiters' timers fire :data:`LAPSE_SECONDS` past the time it was
given (terminated, its host gone) stops holding its rank, so it cannot block the queue; timers
that fire late all alike (a busy host, a fast clock) make no one lapse. A 429 without
Retry-After teaches the gate that the quota is spent whatever its own count says (another app
of the tenant, or a reading of the quota stricter than ours): nothing is let through for
:data:`QUOTA_WAIT_SECONDS`, then one submit at a time until one is accepted.

Everything here is a function of the state and the caller's (orchestration) time, so the
Durable entity that holds the state (``orchestrations/submit_gate.py``) is a thin shell.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dsr_export.domain import pacing

#: The Durable entity's function name (entity ids are lower case); one entity per tenant.
ENTITY_NAME: Final = "submit_gate"
#: The gate key of the app's own tenant (a DSR that names no tenant).
HOME_TENANT: Final = "home"
#: Submits a tenant may send in a window (Microsoft: 1,000 a day per tenant).
SUBMITS_PER_WINDOW: Final = 1000
#: Submits for one subject (user) in a window (Microsoft: 100 a day per subject), whatever
#: sends them: retries, resubmits after a storage outage, a submit Graph never posted, another
#: DSR of the same person.
SUBMITS_PER_SUBJECT: Final = 100
#: The window the gate counts in: rolling, so it is never looser than a calendar day.
WINDOW_SECONDS: Final = 24 * 3600
#: Added to a let-through's 24 hours before its slot counts as free: the submit reaches Graph a
#: little after the gate let it through (an activity to schedule), and Graph counts from then.
SLOT_MARGIN_SECONDS: Final = 60
#: A waiter that has not asked again this long after the time it was given no longer holds
#: its rank (a DSR terminated without withdrawing). Generous: timers fire late on a busy or
#: idle app, and a DSR that lapses too early is jumped by later deadlines.
LAPSE_SECONDS: Final = 6 * 3600
#: A gap this long with no operation at all is a pause (the host down, a deployment): it does
#: not count against the waiters, whose timers could not fire meanwhile.
PAUSE_SECONDS: Final = 600
#: After Graph said the quota is spent: the wait before the gate lets one submit through again.
QUOTA_WAIT_SECONDS: Final = pacing.QUOTA_WAIT_SECONDS
#: While one probe submit is out after a spent quota, others ask again after this long.
PROBE_RECHECK_SECONDS: Final = 300
#: Exports in flight are counted per lapse bucket of this many seconds (rounded up), not one
#: entry per export: at 20,000 in flight the state stays a few kB (``python -m bench gate``).
BUCKET_SECONDS: Final = 600
#: A waiter with no legal deadline sorts after every dated one.
_NO_DEADLINE: Final = "9999-12-31T23:59:59.000000+00:00"
_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"


class SubmitVerdict:
    """How a submit the gate let through ended, as the DSR reports it."""

    ACCEPTED = "accepted"  # Graph took the export: the DSR leaves the queue
    QUOTA = "quota"  # 429 without Retry-After: the quota is spent; the DSR stays queued
    RETRY = "retry"  # another refusal worth a retry (503, a 429 with Retry-After): stays queued
    ENDED = "ended"  # the submit failed for good, or the DSR ended: leaves the queue


@dataclass(frozen=True)
class Waiter:
    """A DSR waiting for a slot, and when it was told to ask again."""

    deadline: str
    received: str
    ask_at: str

    def key(self, request_id: str) -> tuple[str, str, str]:
        # Canonical UTC text (:func:`_iso`) sorts like the instants it names.
        return (self.deadline, self.received, request_id)


@dataclass(frozen=True)
class GateAnswer:
    """The gate's answer to one ask: through now, or ask again at ``ask_at``."""

    granted: bool
    ask_at: str | None = None
    position: int = 0
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "askAt": self.ask_at,
            "position": self.position,
            "queued": self.queued,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> GateAnswer:
        raw = raw if isinstance(raw, dict) else {}
        return cls(
            granted=bool(raw.get("granted")),
            ask_at=raw.get("askAt"),
            position=int(raw.get("position") or 0),
            queued=int(raw.get("queued") or 0),
        )


@dataclass(frozen=True)
class GateState:
    """What the gate remembers: the waiters, the submits in the window, what Graph taught it."""

    waiters: dict[str, Waiter] = field(default_factory=dict)
    #: When each submit the gate let through went, oldest first (pruned past the window).
    sent: tuple[str, ...] = ()
    #: Let through, its outcome not reported yet: request id -> when.
    out: dict[str, str] = field(default_factory=dict)
    #: Graph said the quota is spent: nothing goes through before this moment.
    blocked_until: str | None = None
    #: After a spent quota, one submit at a time until one is accepted.
    probing: bool = False
    #: The latest time any caller reported: the gate's clock never runs backwards.
    clock: str | None = None
    #: Exports Graph accepted and the gate let through, not yet reported ended.
    granted_total: int = 0
    quota_signals: int = 0
    #: Per subject (the user's object id): when each submit for it went, oldest first.
    subjects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Exports in flight (polling), counted by lapse bucket: until when they count without a
    #: word from their DSRs -> how many (:func:`pace`). The order of exports does not matter,
    #: only their number, so no entry per export: each DSR remembers its bucket and gives it
    #: back when it checks in again or leaves, and the gate moves or drops one from it.
    exporting: dict[str, int] = field(default_factory=dict)
    #: Accepted by Graph, their DSRs' first check-in to come (moments): request id -> when.
    starting: dict[str, str] = field(default_factory=dict)
    #: The latest time a waiter had been given and came back at (its timer fired): a waiter
    #: lapses once timers :data:`LAPSE_SECONDS` later than its own have fired, so a host that
    #: runs timers late (busy, or a fast clock) makes no one lapse.
    fired: str | None = None
    #: Seconds of pauses (:data:`PAUSE_SECONDS`) so far: the in-flight buckets are kept on a
    #: clock that stands still while nothing runs (the gate's time minus this), so an export
    #: does not lapse while its DSR's timers could not fire, and its bucket keeps its name.
    paused: int = 0
    #: The tenant's ``quotaBudget.submitsPerDay`` as the latest DSR that carried one said
    #: (None: none did; the documented quota): the submits the window admits (:func:`_limit`).
    submit_budget: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "waiters": {k: [w.deadline, w.received, w.ask_at] for k, w in self.waiters.items()},
            "sent": list(self.sent),
            "out": dict(self.out),
            "blockedUntil": self.blocked_until,
            "probing": self.probing,
            "clock": self.clock,
            "grantedTotal": self.granted_total,
            "quotaSignals": self.quota_signals,
            "subjects": {k: list(v) for k, v in self.subjects.items()},
            "inFlight": dict(self.exporting),
            "starting": dict(self.starting),
            "fired": self.fired,
            "paused": self.paused,
            "submitBudget": self.submit_budget,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> GateState:
        """Read the entity's state back (None or garbage: a fresh gate)."""
        if not isinstance(raw, dict):
            return cls()
        waiters = {
            str(k): Waiter(str(v[0]), str(v[1]), str(v[2]))
            for k, v in (raw.get("waiters") or {}).items()
            if isinstance(v, list) and len(v) == 3
        }
        return cls(
            waiters=waiters,
            sent=tuple(str(s) for s in raw.get("sent") or ()),
            out={str(k): str(v) for k, v in (raw.get("out") or {}).items()},
            blocked_until=raw.get("blockedUntil"),
            probing=bool(raw.get("probing")),
            clock=raw.get("clock"),
            granted_total=int(raw.get("grantedTotal") or 0),
            quota_signals=int(raw.get("quotaSignals") or 0),
            subjects={
                str(k): tuple(str(t) for t in v) for k, v in (raw.get("subjects") or {}).items()
            },
            exporting=_in_flight_from(raw),
            starting={str(k): str(v) for k, v in (raw.get("starting") or {}).items()},
            fired=raw.get("fired"),
            paused=int(raw.get("paused") or 0),
            submit_budget=_budget_from(raw.get("submitBudget")),
        )


@dataclass(frozen=True)
class Ask:
    """One DSR's ask for a slot: who, its legal deadline, when it was received, and now."""

    request_id: str
    deadline: str | None
    received: str | None
    now: str
    #: The subject's object id (a GUID, as in the job's input): its own quota of 100 a day.
    subject: str | None = None
    #: The tenant's ``quotaBudget.submitsPerDay`` as resolved at the DSR's intake (None: a DSR
    #: of the app's own tenant, or started before budgets counted; the gate keeps what it has).
    submits_per_day: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "deadline": self.deadline,
            "received": self.received,
            "now": self.now,
            "subject": self.subject,
            "submitsPerDay": self.submits_per_day,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Ask:
        raw = raw if isinstance(raw, dict) else {}
        return cls(
            request_id=str(raw.get("requestId") or ""),
            deadline=raw.get("deadline"),
            received=raw.get("received"),
            now=str(raw.get("now")),
            subject=raw.get("subject"),
            submits_per_day=_budget_from(raw.get("submitsPerDay")),
        )


def _budget_from(raw: object) -> int | None:
    """A budget from the wire: a positive whole number, else none (the documented quota)."""
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else None


def _in_flight_from(raw: dict[str, Any]) -> dict[str, int]:
    """The in-flight buckets; a state written before them (one entry per export: request id
    -> until when) is counted into buckets once."""
    buckets: dict[str, int] = {}
    for until, count in (raw.get("inFlight") or {}).items():
        if isinstance(count, int) and count > 0:
            buckets[str(until)] = count
    for until in (raw.get("exporting") or {}).values():
        key = bucket(_at(str(until)))
        buckets[key] = buckets.get(key, 0) + 1
    return buckets


def bucket(moment: datetime) -> str:
    """The in-flight bucket an export counting until ``moment`` goes in: the next multiple of
    :data:`BUCKET_SECONDS` (never earlier, so it never lapses early)."""
    epoch = moment.timestamp()
    rounded = -(-int(epoch) // BUCKET_SECONDS) * BUCKET_SECONDS
    return _iso(datetime.fromtimestamp(rounded, UTC))


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _iso(moment: datetime) -> str:
    """Fixed-width UTC text: every time the gate keeps is in this form, so the queue sorts and
    compares as text (thousands of waiters per operation, no parsing)."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def _canon(text: str | None) -> str | None:
    return None if text is None else _iso(_at(text))


def _tick(state: GateState, reported: str) -> tuple[GateState, datetime]:
    """The gate's now: the latest caller's time seen; the window pruned to it."""
    now = _at(reported)
    if state.clock is not None:
        now = max(now, _at(state.clock))
        gap = now - _at(state.clock)
        if gap > timedelta(seconds=PAUSE_SECONDS):
            paused = {
                k: replace(w, ask_at=_iso(_at(w.ask_at) + gap)) for k, w in state.waiters.items()
            }
            credit = state.paused + int(gap.total_seconds())
            fired = None if state.fired is None else _iso(_at(state.fired) + gap)
            # A let-through's report could not come while the host was down either: the pause
            # does not age it towards "its DSR is gone" (a probe in flight stays out, so the
            # next waiter does not probe beside it).
            out = {k: _iso(_at(v) + gap) for k, v in state.out.items()}
            state = replace(state, waiters=paused, paused=credit, fired=fired, out=out)
    horizon = _iso(now - timedelta(seconds=WINDOW_SECONDS + SLOT_MARGIN_SECONDS))
    sent = state.sent[bisect_right(state.sent, horizon) :]  # in order: the clock only advances
    # A let-through never reported (its DSR gone) stops counting as out after a while.
    stale = _iso(now - timedelta(seconds=LAPSE_SECONDS))
    out = {k: v for k, v in state.out.items() if v > stale}
    starting = {k: v for k, v in state.starting.items() if v > stale}
    subjects = {
        k: kept for k, v in state.subjects.items() if (kept := v[bisect_right(v, horizon) :])
    }
    state = replace(state, sent=sent, out=out, starting=starting, subjects=subjects)
    return replace(state, clock=_iso(now)), now


def _lapse_clock(state: GateState, now: datetime) -> datetime:
    """The clock the in-flight buckets are named on: the gate's, pauses left out."""
    return now - timedelta(seconds=state.paused)


def _ranked(state: GateState) -> list[str]:
    """Request ids of the waiters that hold a rank, earliest deadline first: all but those
    whose time came :data:`LAPSE_SECONDS` before a time at which another waiter came back."""
    live = list(state.waiters)
    if state.fired is not None:
        cutoff = _iso(_at(state.fired) - timedelta(seconds=LAPSE_SECONDS))
        live = [k for k, w in state.waiters.items() if w.ask_at >= cutoff]
    return sorted(live, key=lambda k: state.waiters[k].key(k))


def _came_back(state: GateState, known: Waiter | None, now: datetime) -> GateState:
    """A waiter asks again at or after the time it was given: timers up to then have fired."""
    if known is None or _iso(now) < known.ask_at:
        return state
    if state.fired is not None and state.fired >= known.ask_at:
        return state
    return replace(state, fired=known.ask_at)


def _limit(state: GateState) -> int:
    """The submits the window admits: the tenant's budget (the latest heard), never above the
    documented quota (:data:`SUBMITS_PER_WINDOW`)."""
    if state.submit_budget is None:
        return SUBMITS_PER_WINDOW
    return min(SUBMITS_PER_WINDOW, state.submit_budget)


def _free(state: GateState) -> int:
    return max(_limit(state) - len(state.sent), 0)


def _slot_at(state: GateState, beyond: int, now: datetime) -> datetime:
    """When the slot ``beyond`` places past the free ones comes: each submit in the window
    frees its slot a window after it went, and each free slot, taken now, a window from now;
    slots come round again every window. A budget lowered below the submits in the window
    frees a slot only once the excess has left it."""
    span = timedelta(seconds=WINDOW_SECONDS + SLOT_MARGIN_SECONDS)
    taken = len(state.sent)
    rounds, index = divmod(beyond, _limit(state))
    index += max(taken - _limit(state), 0)
    went = _at(state.sent[index]) if index < taken else now
    return went + span * (rounds + 1)


def ask(state: GateState, request: Ask) -> tuple[GateState, GateAnswer]:
    """A DSR asks to submit: through now, or when to ask again. Asking again is idempotent."""
    state, now = _tick(state, request.now)
    if request.submits_per_day is not None:  # the latest budget heard wins
        state = replace(state, submit_budget=request.submits_per_day)
    rid = request.request_id
    held = _subject_held(state, request.subject)
    if held is not None:
        # The subject's own quota is spent: the DSR leaves the queue (it holds no rank, so it
        # keeps no one waiting) and comes back when the subject's oldest submit is a day old.
        state = withdraw(state, rid)
        return state, GateAnswer(
            granted=False, ask_at=_iso(max(held, now)), queued=len(state.waiters)
        )
    known = state.waiters.get(rid)
    state = _came_back(state, known, now)
    waiter = Waiter(
        deadline=_canon(request.deadline) or (known.deadline if known else _NO_DEADLINE),
        received=_canon(request.received) or (known.received if known else _iso(now)),
        ask_at=_iso(now),
    )
    waiters = {**state.waiters, rid: waiter}
    state = replace(state, waiters=waiters)
    ranked = _ranked(state)
    rank = ranked.index(rid)
    blocked = state.blocked_until is not None and now < _at(state.blocked_until)
    window_free = _free(state)
    free = window_free
    if state.probing:  # one submit at a time until Graph accepts one again
        free = 0 if state.out else min(window_free, 1)
    if not blocked and rank < free:
        return _let_through(state, rid, request.subject, now, len(ranked) - 1)
    again = _again(state, rank, window_free, now, blocked=blocked)
    waiters = {**state.waiters, rid: replace(waiter, ask_at=_iso(again))}
    answer = GateAnswer(granted=False, ask_at=_iso(again), position=rank, queued=len(ranked))
    return replace(state, waiters=waiters), answer


def _again(
    state: GateState, rank: int, window_free: int, now: datetime, *, blocked: bool
) -> datetime:
    """When a DSR the gate holds back should ask again."""
    recheck = timedelta(seconds=PROBE_RECHECK_SECONDS)
    if blocked:
        again = max(_at(state.blocked_until or _iso(now)), now)
        return again + recheck if rank else again
    if state.probing and window_free:
        # The window has room but a probe decides first: soon, not a window later.
        return now + recheck
    return max(_slot_at(state, rank - window_free, now), now)


def _subject_held(state: GateState, subject: str | None) -> datetime | None:
    """When the subject's count drops below its quota, if it is at the quota now."""
    sent = state.subjects.get(subject or "", ())
    if not subject or len(sent) < SUBMITS_PER_SUBJECT:
        return None
    span = timedelta(seconds=WINDOW_SECONDS + SLOT_MARGIN_SECONDS)
    return _at(sent[len(sent) - SUBMITS_PER_SUBJECT]) + span


def _let_through(
    state: GateState, rid: str, subject: str | None, now: datetime, queued: int
) -> tuple[GateState, GateAnswer]:
    waiters = {k: w for k, w in state.waiters.items() if k != rid}
    subjects = dict(state.subjects)
    if subject:
        subjects[subject] = (*subjects.get(subject, ()), _iso(now))
    state = replace(
        state,
        waiters=waiters,
        sent=(*state.sent, _iso(now)),
        out={**state.out, rid: _iso(now)},
        subjects=subjects,
        granted_total=state.granted_total + 1,
    )
    return state, GateAnswer(granted=True, position=0, queued=queued)


@dataclass(frozen=True)
class SubmitReport:
    """A DSR reports how the submit the gate let through ended (a :class:`SubmitVerdict`)."""

    request_id: str
    verdict: str
    now: str
    deadline: str | None = None
    received: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "verdict": self.verdict,
            "now": self.now,
            "deadline": self.deadline,
            "received": self.received,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> SubmitReport:
        raw = raw if isinstance(raw, dict) else {}
        return cls(
            request_id=str(raw.get("requestId") or ""),
            verdict=str(raw.get("verdict") or SubmitVerdict.ENDED),
            now=str(raw.get("now")),
            deadline=raw.get("deadline"),
            received=raw.get("received"),
        )


def report(state: GateState, done: SubmitReport) -> GateState:
    """Record a let-through's outcome; a spent quota blocks the gate for a while.

    The slot it used stays counted whatever the outcome: Microsoft does not say whether a
    refused submit counts, so the gate assumes it does.
    """
    state, now = _tick(state, done.now)
    rid = done.request_id
    out = {k: v for k, v in state.out.items() if k != rid}
    state = replace(state, out=out)
    if done.verdict == SubmitVerdict.ACCEPTED:  # in flight; its DSR checks in at once (pace)
        starting = {**state.starting, rid: _iso(now)}
        return replace(state, probing=False, blocked_until=None, starting=starting)
    if done.verdict == SubmitVerdict.ENDED:
        return withdraw(state, rid)
    # Still wants a slot: it keeps its place (its deadline), asking again at once or after
    # the quota's wait.
    waiter = Waiter(
        _canon(done.deadline) or _NO_DEADLINE, _canon(done.received) or _iso(now), _iso(now)
    )
    state = replace(state, waiters={**state.waiters, rid: state.waiters.get(rid, waiter)})
    if done.verdict == SubmitVerdict.QUOTA:
        until = _iso(now + timedelta(seconds=QUOTA_WAIT_SECONDS))
        return replace(
            state, blocked_until=until, probing=True, quota_signals=state.quota_signals + 1
        )
    return state


def withdraw(state: GateState, request_id: str, counted_until: str | None = None) -> GateState:
    """The DSR no longer wants a slot (cancelled, ended, its submit settled); its export, if
    it was counted in flight (``counted_until``: the bucket it was given), no longer counts."""
    return replace(
        state,
        waiters={k: w for k, w in state.waiters.items() if k != request_id},
        out={k: v for k, v in state.out.items() if k != request_id},
        starting={k: v for k, v in state.starting.items() if k != request_id},
        exporting=_uncount(state.exporting, counted_until),
    )


def _uncount(exporting: dict[str, int], until: str | None) -> dict[str, int]:
    """One export fewer in bucket ``until`` (if it still counts there)."""
    if until is None or exporting.get(until, 0) <= 0:
        return exporting
    left = {**exporting, until: exporting[until] - 1}
    return {k: v for k, v in left.items() if v > 0}


@dataclass(frozen=True)
class PaceAsk:
    """A polling DSR's call: count my export in flight; how many are? ``cap`` is its policy's
    longest poll interval (how long the gate keeps counting it without a word);
    ``counted_until``: the bucket the gate counted it in last (None: not counted yet)."""

    request_id: str
    now: str
    cap: int = 3600
    counted_until: str | None = None
    #: The tenant's ``quotaBudget.pollsPerHour`` the DSR paces its polls within (None: the
    #: documented quota): how long its waits may grow, so how long the gate keeps counting it.
    polls_per_hour: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "now": self.now,
            "cap": self.cap,
            "countedUntil": self.counted_until,
            "pollsPerHour": self.polls_per_hour,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> PaceAsk:
        raw = raw if isinstance(raw, dict) else {}
        return cls(
            request_id=str(raw.get("requestId") or ""),
            now=str(raw.get("now")),
            cap=int(raw.get("cap") or 3600),
            counted_until=raw.get("countedUntil"),
            polls_per_hour=_budget_from(raw.get("pollsPerHour")),
        )


@dataclass(frozen=True)
class Paced:
    """The gate's answer to :class:`PaceAsk`: the tenant's exports in flight, this one
    counted, and the bucket it is now counted in (to give back next time)."""

    in_flight: int
    counted_until: str

    def to_dict(self) -> dict[str, Any]:
        return {"inFlight": self.in_flight, "countedUntil": self.counted_until}

    @classmethod
    def from_dict(cls, raw: Any) -> Paced:
        raw = raw if isinstance(raw, dict) else {}
        return cls(int(raw.get("inFlight") or 1), str(raw.get("countedUntil") or ""))


def pace(state: GateState, asked: PaceAsk) -> tuple[GateState, Paced]:
    """A polling DSR checks in: its export counts as in flight until a while after its next
    check-in is due (:func:`pacing.pace_lapse_seconds`), or until it withdraws (its DSR
    ended); returns the tenant's exports in flight, this one included, and those the gate will
    let through before this DSR checks in again, from which the DSR paces its polls
    (:func:`pacing.paced_poll_wait`)."""
    state, now = _tick(state, asked.now)
    rid, lapse_now = asked.request_id, _lapse_clock(state, now)
    live = {k: v for k, v in state.exporting.items() if k > _iso(lapse_now)}
    exporting = _uncount(live, asked.counted_until)  # moved, not counted twice
    # A DSR that checks in polls its export: it is no longer out or starting.
    starting = {k: v for k, v in state.starting.items() if k != rid}
    out = {k: v for k, v in state.out.items() if k != rid}
    # Let through and not yet reported: exports about to be in flight (a window's worth goes
    # through at once on an empty window; the first DSRs must not count only themselves).
    count = sum(exporting.values()) + len(out) + len(starting) + 1
    per_hour = asked.polls_per_hour  # the asker's own: its waits, its lapse, its horizon
    lapse = timedelta(seconds=pacing.pace_lapse_seconds(count, asked.cap, per_hour))
    until = bucket(lapse_now + lapse)
    exporting = {**exporting, until: exporting.get(until, 0) + 1}
    state = replace(state, exporting=exporting, starting=starting, out=out)
    horizon = timedelta(seconds=pacing.pace_horizon_seconds(count, asked.cap, per_hour))
    return state, Paced(count + _coming(state, now, horizon), until)


def _coming(state: GateState, now: datetime, within: timedelta) -> int:
    """Waiters the gate will let through before ``within`` has passed: the free slots and the
    slots that free meanwhile, at most as many as wait. A DSR acts on its count until it
    checks in again, and a backlog's slots free a window's worth at a time (1,000 exports
    starting within seconds): counted ahead, so that the polls of the exports already in
    flight leave room for them (``python -m bench polls``)."""
    queued = len(state.waiters)  # lapsed ones too: an upper bound, without a pass over them
    if not queued:
        return 0
    span = timedelta(seconds=WINDOW_SECONDS + SLOT_MARGIN_SECONDS)
    freeing = bisect_right(state.sent, _iso(now + within - span))
    freeing -= max(len(state.sent) - _limit(state), 0)  # a lowered budget's excess first
    return min(queued, _free(state) + max(freeing, 0))


def slot_after_deadline(asked: Ask, answer: GateAnswer) -> bool:
    """Whether the slot the gate named for this DSR comes after its legal deadline."""
    if answer.granted or answer.ask_at is None or asked.deadline is None:
        return False
    return _at(answer.ask_at) > _at(asked.deadline)


def status(state: GateState, now: str | None = None) -> dict[str, Any]:
    """Counts only (no request ids beyond the head): what operations shows of one gate."""
    moment = _at(now) if now else _at(state.clock) if state.clock else None
    ranked = _ranked(state)
    head = state.waiters[ranked[0]] if ranked else None
    next_slot = None
    if moment is not None and ranked and _free(state) == 0:
        next_slot = _iso(_slot_at(state, 0, moment))
    return {
        "queued": len(ranked),
        "lapsed": len(state.waiters) - len(ranked),
        "inWindow": len(state.sent),
        "free": _free(state),
        "outstanding": len(state.out),
        "exporting": len(state.starting)
        + sum(
            n
            for until, n in state.exporting.items()
            if moment is None or until > _iso(_lapse_clock(state, moment))
        ),
        "nextSlotAt": next_slot,
        "blockedUntil": state.blocked_until,
        "earliestDeadline": head.deadline if head else None,
        "grantedTotal": state.granted_total,
        "quotaSignals": state.quota_signals,
    }


def view(state: GateState, now: str, tenant: str) -> dict[str, Any]:
    """What an operator sees of one tenant's gate (``GET /api/gate``): counts and times only,
    no request id, no subject, nothing of a person: the queue's length, the next slot, the
    submits used in the rolling 24 hours, the exports in flight, the earliest deadline
    waiting, and whether Graph's quota refusal holds the gate."""
    seen = status(state, now)
    head = seen["earliestDeadline"]
    return {
        "tenant": tenant,
        "asOf": _iso(_at(now)),
        "queued": seen["queued"],
        "lapsed": seen["lapsed"],
        "submitsInWindow": seen["inWindow"],
        "submitQuota": SUBMITS_PER_WINDOW,
        "submitBudget": _limit(state),
        "windowHours": WINDOW_SECONDS // 3600,
        "nextSlotAt": seen["nextSlotAt"],
        "letThroughUnreported": seen["outstanding"],
        "exportsInFlight": seen["exporting"],
        "earliestDeadline": None if head == _NO_DEADLINE else head,
        "blockedUntil": seen["blockedUntil"],
        "probing": state.probing,
        "quotaSignals": seen["quotaSignals"],
        "letThroughTotal": seen["grantedTotal"],
    }
