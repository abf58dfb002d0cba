"""Capped, jittered exponential backoff shared by connectors and the runtime.

``Backoff(initial, max_delay, timeout)``: the n-th delay is drawn from ``[d/2, d]`` with
``d = min(max_delay, initial * 2**(n-1))``, so workers failing together spread out; the sum of
the waits never exceeds ``timeout`` seconds from the first failure (``None`` or a negative
timeout retries forever, ``0`` never retries). This is Kafka Connect's
``errors.retry.timeout`` / ``errors.retry.delay.max.ms`` pair in seconds.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

__all__ = ["MAX_RETRY_AFTER_S", "Backoff", "retry_after_seconds", "retry_call"]

#: the longest ``Retry-After`` honoured: a receiver asking for hours is treated as down
MAX_RETRY_AFTER_S: Final = 300.0

T = TypeVar("T")


class Backoff:
    """One retry budget: call :meth:`next_delay` (or :meth:`wait`) after each failure and
    :meth:`reset` after a success. Not thread-safe: one per lane."""

    def __init__(
        self,
        initial: float,
        max_delay: float,
        timeout: float | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial <= 0 or max_delay <= 0:
            raise ValueError("initial and max_delay must be > 0")
        self.initial = initial
        self.max_delay = max(max_delay, initial)
        self.timeout = None if timeout is None or timeout < 0 else timeout
        self._rng = rng or random.Random()
        self._clock = clock
        self._started: float | None = None
        self.attempts = 0

    def delay(self, attempt: int) -> float:
        """The jittered delay before retry number ``attempt`` (1-based), ignoring the budget."""
        ceiling = min(self.max_delay, self.initial * (2 ** min(max(attempt, 1) - 1, 30)))
        return self._rng.uniform(ceiling / 2, ceiling)

    @property
    def elapsed(self) -> float:
        return 0.0 if self._started is None else self._clock() - self._started

    def next_delay(self) -> float | None:
        """The wait before the next attempt, or ``None`` when the budget is spent."""
        now = self._clock()
        if self._started is None:
            self._started = now
        self.attempts += 1
        wanted = self.delay(self.attempts)
        if self.timeout is None:
            return wanted
        remaining = self._started + self.timeout - now
        if remaining <= 0:
            return None
        return min(wanted, remaining)

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Sleep the next delay; False when the budget is spent or ``stop`` was set."""
        delay = self.next_delay()
        if delay is None:
            return False
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)

    def reset(self) -> None:
        self._started = None
        self.attempts = 0


def retry_call(
    fn: Callable[[], T],
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...],
    stop: threading.Event | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """``fn()`` until it returns, retrying ``retry_on`` exceptions while ``backoff`` allows;
    the last exception is raised when the budget is spent or ``stop`` is set."""
    while True:
        try:
            result = fn()
        except retry_on as exc:
            if not backoff.wait(stop):
                raise
            if on_retry is not None:
                on_retry(exc, backoff.attempts)
            continue
        backoff.reset()
        return result


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """An HTTP ``Retry-After`` (delay-seconds or an HTTP date) in seconds, within
    [0, :data:`MAX_RETRY_AFTER_S`]; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
