"""Virtual time for the offline durable engine.

Orchestrations wait days or weeks on durable timers; tests and demos cannot. A clock that runs
``speed`` times faster than real time lets the very same orchestrator code go through those
waits in milliseconds while every timestamp it sees stays consistent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FastClock", "SystemClock", "wait_until"]


@runtime_checkable
class Clock(Protocol):
    """What the engine needs from time: a UTC-aware now, and how long to really sleep."""

    def now(self) -> datetime: ...

    def real_seconds_until(self, instant: datetime) -> float:
        """Real (wall) seconds until virtual ``instant``; <= 0 once it has passed."""
        ...

    def on_jump(self, callback: Callable[[], None]) -> None:
        """Register a callback run when virtual time jumps ahead, so sleepers re-check."""
        ...


class SystemClock:
    """Real UTC time, for a host that should behave like Azure."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()).total_seconds()

    def on_jump(self, callback: Callable[[], None]) -> None:
        """Real time never jumps."""


class FastClock:
    """Virtual UTC time running ``speed`` times faster than real time.

    Based on ``time.monotonic`` so that wall-clock adjustments on the machine cannot move
    orchestration time backwards. ``advance`` jumps ahead (never back) for tests that want a
    timer to fire at once regardless of speed.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._speed = speed
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._mono0 = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._mono0) * self._speed
            return self._start + self._offset + timedelta(seconds=elapsed)

    def real_seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()).total_seconds() / self._speed

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("virtual time only moves forward")
        with self._lock:
            self._offset += delta
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def on_jump(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)


def wait_until(
    cond: threading.Condition, clock: Clock, instant: datetime | None, cap: float
) -> None:
    """Sleep on ``cond`` (held by the caller) until notified, ``instant`` or ``cap`` seconds.

    The cap bounds the damage of a lost notification; it is not a polling interval.
    """
    timeout = cap if instant is None else min(cap, max(clock.real_seconds_until(instant), 0.0))
    if timeout > 0:
        cond.wait(timeout)
