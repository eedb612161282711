"""What the real service does under load, on demand: clients are only as good as their retries.

Graph throttles with 429 and ``Retry-After``, fails with 5xx (``Retry-After`` on 503 only),
answers slowly, drops connections (sometimes after the request took effect, which is why a
submit must never be blindly repeated). Each can be switched on for the next K requests of
chosen routes, from the test process or, over the admin API, from another one.

Graph's documented quotas are not faults: they are always on (see :mod:`.quotas`). The one rate
fault here, ``throttle_submits_per_minute``, is a throttle no document states (a sliding minute
on real time, answered with Retry-After), kept for tests of a Retry-After-bearing rate limit.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .replies import GraphError

_ROUTES = frozenset({"submit", "poll", "resolve"})
_OPTIONAL_KNOBS = frozenset({"error_retry_after", "throttle_submits_per_minute"})
_RATE_WINDOW = 60.0
_ERROR_CODES = {
    500: "InternalServerError",
    502: "PartnerError",
    503: "ServiceUnavailable",
    504: "PartnerTimeout",
}


@dataclass
class Faults:
    """Knobs a test or demo flips to make the simulator misbehave.

    The ``*_next`` counters apply to the next K requests on the routes named in ``routes``
    (``submit``, ``poll``, ``resolve``) and count down as they fire. Users in
    ``failing_users`` get operations that end ``failed``; users in ``missing_users`` do not
    exist (404), whatever the directory says. Users are matched by object id or UPN.
    """

    throttle_next: int = 0
    throttle_retry_after: int = 5
    error_next: int = 0
    error_status: int = 503
    error_retry_after: int | None = 5  # sent with 503 only, as the service does
    slow_next: int = 0
    slow_seconds: float = 0.0
    drop_next: int = 0
    drop_after_processing: bool = False  # True: the request takes effect, the answer is lost
    #: Submits that write RequestInfo.json and then fail to post the command (a 500): no
    #: operation exists, though the container looks used.
    fail_before_posting_next: int = 0
    #: A fault, not Graph's quota: at most this many submits in any real-time minute, the rest
    #: answered 429 with Retry-After (the seconds until a place frees). None: off.
    throttle_submits_per_minute: int | None = None
    # Whether the service takes a user delegation SAS is not known (see the contract): this
    # answers StorageLocationInvalid for one (it has `skoid`), so both outcomes can be tested.
    refuse_user_delegation_sas: bool = False
    failing_users: set[str] = field(default_factory=set)
    missing_users: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=lambda: {"submit", "poll", "resolve"})

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}


class FaultInjector:
    """The current ``Faults``, counted down as they fire, and the submit throttle's minute."""

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._submit_times: deque[float] = deque()

    def set(self, **changes: Any) -> Faults:
        """Change some knobs at once; unknown names and ill-typed values are refused."""
        values = {name: _coerce_knob(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in values.items():
                setattr(self.faults, name, value)
            return self.faults

    def reset(self) -> None:
        with self._lock:
            self.faults = Faults()

    def take(self, route: str, counter: str) -> bool:
        """Whether the fault ``counter`` fires for this request of ``route`` (and count it)."""
        with self._lock:
            if route not in self.faults.routes:
                return False
            remaining: int = getattr(self.faults, counter)
            if remaining <= 0:
                return False
            setattr(self.faults, counter, remaining - 1)
            return True

    def raise_injected(self, route: str) -> None:
        """Throttle or fail this request of ``route`` if a fault says so."""
        if self.take(route, "throttle_next"):
            retry_after = str(self.faults.throttle_retry_after)
            raise GraphError(
                429, "TooManyRequests", "Too many requests.", {"Retry-After": retry_after}
            )
        if self.take(route, "error_next"):
            status = self.faults.error_status
            extra = {}
            if status == 503 and self.faults.error_retry_after is not None:
                extra["Retry-After"] = str(self.faults.error_retry_after)
            code = _ERROR_CODES.get(status, "InternalServerError")
            raise GraphError(status, code, "Injected failure.", extra)

    def throttle_submits(self) -> None:
        """Count one submit, or refuse it with 429 if the last minute reached the fault's limit."""
        limit = self.faults.throttle_submits_per_minute
        now = time.monotonic()
        with self._lock:
            while self._submit_times and now - self._submit_times[0] >= _RATE_WINDOW:
                self._submit_times.popleft()
            if limit is not None and len(self._submit_times) >= limit:
                wait = math.ceil(_RATE_WINDOW - (now - self._submit_times[0]))
                raise GraphError(
                    429,
                    "TooManyRequests",
                    f"Too many export requests: limit is {limit} per minute.",
                    {"Retry-After": str(max(1, wait))},
                )
            self._submit_times.append(now)


def _coerce_knob(name: str, value: Any) -> Any:
    """Check a knob from the admin route, so a typo fails there and not in a request later."""
    defaults = Faults()
    if not hasattr(defaults, name):
        raise ValueError(f"unknown fault knob {name!r}")
    default = getattr(defaults, name)
    if value is None and name in _OPTIONAL_KNOBS:
        return None
    if isinstance(default, set):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{name} must be a list of strings")
        if name == "routes" and not set(value) <= _ROUTES:
            raise ValueError(f"routes must be among {sorted(_ROUTES)}")
        return set(value)
    if isinstance(default, bool):
        valid = isinstance(value, bool)
    elif isinstance(default, float):
        valid = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if valid else value
    else:  # counters and the optional limits
        valid = isinstance(value, int) and not isinstance(value, bool)
    if not valid:
        raise TypeError(f"{name}: {value!r} is not a valid value")
    return value
