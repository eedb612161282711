"""When to try Graph again: back-off with deterministic jitter, so a burst does not retry in step.

A thousand DSRs arriving together and throttled together would, with plain doubling, come back
together: every wave hits the limit again (a measured burst drew more throttled answers than
submits). So every wait is spread by a jitter drawn from the request id and the attempt: the
same DSR waits the same on every replay (orchestrators must be deterministic; no random), while
different DSRs spread out. Graph's Retry-After is always the minimum: the jitter only adds.
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
#: The first submit of a DSR is held back by up to this long, so a burst arrives spread out:
#: about the time Graph needs to accept 1,000 submits at 300 a minute. Measured by ``make
#: bench`` (bench/burst.py): 1,000 DSRs arriving at once are all submitted within 1.2x the time
#: the limit allows, with about 1 % of submits throttled; a shorter spread draws a wave of 429s
#: (a third of all calls at 120 s). Three and a half minutes cost nothing on a legal clock of a
#: month. (A shared gate, a Durable entity acting as a token bucket, would adapt to any burst;
#: see docs/architecture.md for why the app does without one.)
FIRST_SUBMIT_SPREAD_SECONDS: Final = 210


#: The wait after Graph refuses on one of its documented quotas. Microsoft Graph
#: "service-specific throttling limits" ("Identity and access data policy operation service
#: limits"): per tenant, 1,000 ``exportPersonalData`` a day (100 per user) and 10,000 other
#: ``dataPolicyOperation`` requests an hour; those answer 429 **without Retry-After**. Such a
#: 429 means "the window's quota is spent", not "try in a minute": a blind minute (or an inline
#: retry) is a wasted call that may itself count against the quota (Microsoft does not say).
#: An hour is the whole poll window, so the hour's budget has turned over in either reading
#: (rolling or clock hour); for submits it is a twenty-fourth of the day, so a DSR comes back
#: at most about 1.5 h (with the spread) after the quota frees (at midnight UTC, or as its
#: oldest submit turns 24 h old: Microsoft does not say which) while trying at most 24 times a
#: day. Used as the minimum wait, like a Retry-After (``errors.classify``).
QUOTA_WAIT_SECONDS: Final = 3600


def fraction(request_id: str, attempt: int, purpose: str = "retry") -> float:
    """A number in [0, 1), fixed for this DSR, attempt and purpose, evenly spread across DSRs."""
    digest = hashlib.sha256(f"{purpose}:{request_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
    backoff = min(cap, base * 2 ** max(attempt - 1, 0))
    return spread(max(backoff, retry_after or 0), request_id, attempt)


def spread(seconds: int, request_id: str, attempt: int, purpose: str = "retry") -> int:
    """``seconds`` stretched by up to :data:`SPREAD`, fixed for this DSR and attempt."""
    return int(seconds * (1 + SPREAD * fraction(request_id, attempt, purpose)))


def first_submit_delay(request_id: str, spread: int = FIRST_SUBMIT_SPREAD_SECONDS) -> int:
    """Seconds to hold a DSR's first submit back: up to ``spread``, fixed per DSR."""
    return int(spread * fraction(request_id, 0, "first-submit"))


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
            min(STORAGE_CAP_SECONDS, STORAGE_BASE_SECONDS * 2 ** (n - 1))
            for n in range(1, STORAGE_RESUBMITS + 1)
        )
    return sum(storage_wait(request_id, n) for n in range(1, STORAGE_RESUBMITS + 1))
