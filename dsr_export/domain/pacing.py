"""When to try again: every back-off, spread and attempt budget of the app, in one place.

Graph's throttling, the operation's polls, a lost submit's lookups, the storage outage at
submit, the ticket's callbacks, the activities' own retries and the adapters' inline retries
all take their waits from here (each pinned by tests/unit/test_pacing.py), so a change to one
policy is made, and reviewed, here.

Submits are not paced here: each one waits for a slot at its tenant's submit gate
(:mod:`dsr_export.domain.gate`), which admits them in deadline order at the pace of Graph's
documented quota (1,000 a day per tenant). Everything else that many DSRs may hit at once (a
503 for all, an outage's end) must not bring them back together, so every wait is spread by a
jitter drawn from the request id and the attempt: the same DSR waits the same on every replay
(orchestrators must be deterministic; no random), while different DSRs spread out. Graph's
Retry-After is always the minimum: the jitter only adds.
"""

from __future__ import annotations

import hashlib
from typing import Final

#: The first wait after a throttled or failed call without Retry-After, doubled each time.
BASE_SECONDS: Final = 30
#: The longest wait between two tries before the export is submitted.
CAP_SECONDS: Final = 3600
#: Each wait is stretched by up to this share of itself.
SPREAD: Final = 0.5


#: The wait after Graph refuses on one of its documented quotas. Microsoft Graph
#: "service-specific throttling limits" ("Identity and access data policy operation service
#: limits"): per tenant, 1,000 ``exportPersonalData`` a day (100 per user) and 10,000 other
#: ``dataPolicyOperation`` requests an hour; those answer 429 **without Retry-After**. Such a
#: 429 means "the window's quota is spent", not "try in a minute": a blind minute (or an inline
#: retry) is a wasted call that may itself count against the quota (Microsoft does not say).
#: An hour is the whole poll window, so the hour's budget has turned over in either reading
#: (rolling or clock hour). For submits it is the tenant's submit gate's hold after such a 429
#: (:mod:`dsr_export.domain.gate`: then one probe at a time), a twenty-fourth of the day, so
#: at most 24 probes a day. Used as the minimum wait, like a Retry-After (``errors.classify``).
QUOTA_WAIT_SECONDS: Final = 3600


def fraction(request_id: str, attempt: int, purpose: str = "retry") -> float:
    """A number in [0, 1), fixed for this DSR, attempt and purpose, evenly spread across DSRs."""
    digest = hashlib.sha256(f"{purpose}:{request_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _doubling(base: int, cap: int, attempt: int) -> int:
    """``base`` doubled for each attempt after the first, at most ``cap``."""
    doubled: int = base * 2 ** max(attempt - 1, 0)
    return min(cap, doubled)


def retry_wait(
    request_id: str,
    attempt: int,
    retry_after: int | None = None,
    *,
    base: int = BASE_SECONDS,
    cap: int = CAP_SECONDS,
) -> int:
    """Seconds before try ``attempt + 1``: doubling from ``base`` up to ``cap``, at least
    Retry-After, then stretched by up to :data:`SPREAD`."""
    backoff = _doubling(base, cap, attempt)
    return spread(max(backoff, retry_after or 0), request_id, attempt)


def spread(seconds: int, request_id: str, attempt: int, purpose: str = "retry") -> int:
    """``seconds`` stretched by up to :data:`SPREAD`, fixed for this DSR and attempt."""
    return int(seconds * (1 + SPREAD * fraction(request_id, attempt, purpose)))


#: The first wait after a submit the export storage's outage spoilt, doubled each time.
STORAGE_BASE_SECONDS: Final = 300
#: The longest such wait.
STORAGE_CAP_SECONDS: Final = 7200
#: Submits spoilt by a storage outage that one attempt of a DSR waits out (a fresh container
#: each): waits of 5, 10, 20, 40, 80 minutes and three of 2 hours, each stretched by up to
#: half, so 8.6 to 12.9 hours of outage in all before the DSR fails as ExportStorageUnavailable.
STORAGE_RESUBMITS: Final = 8


def storage_wait(request_id: str, resubmit: int) -> int:
    """Seconds before resubmit number ``resubmit`` (from 1) after a storage outage."""
    return retry_wait(request_id, resubmit, base=STORAGE_BASE_SECONDS, cap=STORAGE_CAP_SECONDS)


def storage_outage_ridden_out(request_id: str = "") -> int:
    """Seconds of storage outage at submit the waits cover in all (the shortest, unstretched
    sum when ``request_id`` is empty)."""
    if not request_id:
        return sum(
            _doubling(STORAGE_BASE_SECONDS, STORAGE_CAP_SECONDS, n)
            for n in range(1, STORAGE_RESUBMITS + 1)
        )
    return sum(storage_wait(request_id, n) for n in range(1, STORAGE_RESUBMITS + 1))


#: Activities raise only on unexpected, presumably transient trouble (storage hiccup, worker
#: recycled): the orchestrator's retry options for them, first wait and attempts in all.
ACTIVITY_FIRST_RETRY_SECONDS: Final = 30
ACTIVITY_ATTEMPTS: Final = 5
#: A package build is tried three times, each try from scratch.
PACKAGE_FIRST_RETRY_SECONDS: Final = 15
PACKAGE_ATTEMPTS: Final = 3

#: A submit Graph never posted (its receipt is in the container, the operation unknown) is
#: tried again in a fresh container, at most this many submits in all.
SUBMIT_ATTEMPTS: Final = 5
#: Waits between lookups of a lost submit's receipt: five lookups over about 15 minutes.
RECOVERY_WAITS: Final = (60, 120, 240, 480)


def recovery_wait(request_id: str, lookup: int) -> int:
    """Seconds before lookup number ``lookup`` (from 1 after the first) of a lost submit."""
    return spread(RECOVERY_WAITS[lookup - 1], request_id, lookup, "recovery")


#: The first poll of an accepted export, when Graph sent no Retry-After.
FIRST_POLL_SECONDS: Final = 60


def poll_wait(previous: int, *, cap: int, retry_after: int | None = None) -> int:
    """Seconds until the next poll: double the last wait up to ``cap``.

    A Retry-After from Graph is always honoured as the minimum, even above the cap: the service
    asked for it.
    """
    wait = min(cap, max(previous * 2, 1))
    if retry_after is not None:
        wait = max(wait, retry_after)
    return wait


def poll_retry_wait(
    request_id: str,
    poll_round: int,
    previous: int,
    cap: int,
    retry_after: int | None,
    in_flight: int = 1,
    per_hour: int | None = None,
) -> int:
    """Seconds until the next poll after Graph refused a check: :func:`poll_wait`, spread,
    because after an outage every DSR gets its 503 at once and they must not all come back at
    once; never below the tenant's poll budget (:func:`budget_wait`)."""
    wait = spread(
        poll_wait(previous, cap=cap, retry_after=retry_after), request_id, poll_round, "poll"
    )
    return max(wait, budgeted_wait(request_id, poll_round, in_flight, per_hour))


#: The polls (``GET dataPolicyOperation``) all of a tenant's exports may send in an hour.
#: Microsoft documents 10,000 "other" data-policy-operation requests an hour per tenant, with a
#: 429 without Retry-After beyond; 9,000 leaves a tenth for what the budget does not pace (an
#: export's first poll, retries after a refused check, a check at a legal-clock moment, another
#: app of the tenant).
POLL_BUDGET_PER_HOUR: Final = 9000
#: A DSR in its poll phase asks its tenant's gate how many exports are in flight at the first
#: poll of each execution and every this many polls after: a call is two history events, so a
#: fresh count costs little, and the count it carries changes at most by the gate's submit pace
#: (1,000 a day) meanwhile.
POLL_PACE_EVERY: Final = 5


def poll_budget(polls_per_hour: int | None = None) -> int:
    """The polls an hour a tenant's exports pace within, from the tenant's ``quotaBudget``
    ``pollsPerHour`` (the share of Graph's 10,000 this deployment may spend; None: all of it):
    nine tenths of that share, for the same headroom as :data:`POLL_BUDGET_PER_HOUR` keeps of
    the whole (unpaced first polls, retries, legal-clock checks), and never above that."""
    if polls_per_hour is None:
        return POLL_BUDGET_PER_HOUR
    return max(1, min(POLL_BUDGET_PER_HOUR, polls_per_hour * 9 // 10))


def budget_wait(in_flight: int, per_hour: int | None = None) -> int:
    """The least seconds between two polls of one export when ``in_flight`` exports of the
    tenant poll: each takes its share of the tenant's poll budget (:func:`poll_budget` of
    ``per_hour``, the tenant's ``pollsPerHour``; by default :data:`POLL_BUDGET_PER_HOUR`:
    9,000 in flight: an hour; 20,000: 2.2 hours). Rounded up, so the shares never add up to
    more than the budget."""
    return -(-max(in_flight, 0) * 3600 // poll_budget(per_hour))


def budgeted_wait(
    request_id: str, poll_round: int, in_flight: int, per_hour: int | None = None
) -> int:
    """:func:`budget_wait`, spread like the other waits (the jitter only adds, so the tenant's
    polls stay under the budget), fixed for this DSR and poll."""
    return spread(budget_wait(in_flight, per_hour), request_id, poll_round, "poll-budget")


def paced_poll_wait(
    request_id: str,
    poll_round: int,
    previous: int,
    *,
    cap: int,
    in_flight: int,
    per_hour: int | None = None,
) -> int:
    """Seconds until the next poll of a running export: :func:`poll_wait` (doubling up to the
    cap) while the tenant's exports fit the poll budget, the budget's share (spread) when they
    do not. One export in flight: exactly :func:`poll_wait`."""
    own = poll_wait(previous, cap=cap)
    floor = budget_wait(in_flight, per_hour)
    if floor <= own:
        return own
    return budgeted_wait(request_id, poll_round, in_flight, per_hour)


def first_poll_wait(
    request_id: str, retry_after: int, in_flight: int, per_hour: int | None = None
) -> int:
    """Seconds until an accepted export's first poll: Graph's Retry-After (a minute), unless
    the tenant's exports are beyond the budget, then the budget's share, spread. The gate lets
    a window's 1,000 submits through at once; their first polls, unpaced, came in one minute
    on top of a full budget (9,940 GETs in that hour at 11,600 in flight, ``bench polls``).
    One export in flight: exactly Retry-After."""
    if budget_wait(in_flight, per_hour) <= retry_after:
        return retry_after
    return max(retry_after, budgeted_wait(request_id, 0, in_flight, per_hour))


def pace_horizon_seconds(in_flight: int, cap: int, per_hour: int | None = None) -> int:
    """The longest a polling DSR acts on one count from its tenant's gate: until its next
    check-in, :data:`POLL_PACE_EVERY` polls later, each at most the cap or the budget's share,
    stretched by the spread."""
    return int(POLL_PACE_EVERY * max(cap, budget_wait(in_flight, per_hour)) * (1 + SPREAD))


def pace_lapse_seconds(in_flight: int, cap: int, per_hour: int | None = None) -> int:
    """How long the gate keeps counting an export in flight after the DSR's last call: the
    longest :data:`POLL_PACE_EVERY` polls can take (each wait at most the cap or the budget's
    share, stretched by the spread, or a quota refusal's wait), plus the gate's lapse margin
    for late timers. An export whose DSR vanished without a word stops counting after that."""
    longest = max(cap, budget_wait(in_flight, per_hour), QUOTA_WAIT_SECONDS)
    return int(POLL_PACE_EVERY * longest * (1 + SPREAD)) + 6 * 3600


#: Waits between ticket callback attempts: four attempts over about 12 minutes, short enough
#: not to hold up the export for long. (The 1.x SDK's retry options have no back-off
#: coefficient, so these are durable timers of the orchestrator's own.)
CALLBACK_WAITS: Final = (30, 120, 600)
#: urllib3's ``backoff_factor`` for a callback's inline retries on one address (0.5 s, 1 s).
CALLBACK_INLINE_BACKOFF_FACTOR: Final = 0.5

#: urllib3's ``backoff_factor`` for Graph's inline retries inside an activity (jitter: half).
GRAPH_INLINE_BACKOFF_FACTOR: Final = 2.0
#: Longest Retry-After slept on inside an activity; longer waits become durable timers.
INLINE_WAIT_MAX_SECONDS: Final = 30.0
#: The wait assumed when Graph throttles without a Retry-After.
DEFAULT_RETRY_AFTER_SECONDS: Final = 60
#: Wait before retrying a transient failure that came without Retry-After (``errors.classify``).
TRANSIENT_WAIT_SECONDS: Final = 60

#: How many times an evidence writer re-reads the log's tail after losing the append position
#: to another writer, and the step of its jittered, linearly growing pause between tries.
EVIDENCE_APPEND_ATTEMPTS: Final = 8
EVIDENCE_APPEND_STEP_SECONDS: Final = 0.05


def evidence_append_pause(
    attempt: int, jitter: float, step: float = EVIDENCE_APPEND_STEP_SECONDS
) -> float:
    """Seconds an evidence writer pauses after losing try ``attempt`` (from 0); ``jitter`` in
    [0, 1) keeps racing writers apart."""
    return step * (attempt + jitter)
