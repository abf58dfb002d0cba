"""Protecting a receiver: a token bucket (rate limit) and a circuit breaker. Thread-safe, so
one instance can be shared by the lanes of a sink (one per receiver, e.g. per agency)."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker", "TokenBucket"]

log = logging.getLogger("connectors.sdk.limits")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Take a token and return 0, or return how long until one is there (none taken)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event) -> bool:
        """Take a token, waiting as needed; False if ``stop`` was set meanwhile."""
        while True:
            wait = self.wait_s()
            if wait == 0:
                return True
            if stop.wait(wait):
                return False


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Open after ``failures`` consecutive failures; after ``cooldown_s`` one probe may go
    (half-open); its success closes the circuit, its failure opens it again.

    ``on_change`` is called with each new state (export it as a gauge); ``name`` is for the
    log line of a change."""

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        *,
        name: str = "receiver",
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.name = name
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self.opened_count = 0
        if on_change is not None:
            on_change(self._state)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def _set(self, state: BreakerState) -> None:
        if state is self._state:
            return
        log.info("%s circuit %s -> %s", self.name, self._state.name, state.name)
        if state is BreakerState.OPEN:
            self.opened_count += 1
        self._state = state
        if self._on_change is not None:
            self._on_change(state)

    def wait_s(self) -> float:
        """0 when a request may go now (the caller then reports its result), else how long
        to wait before asking again."""
        with self._lock:
            now = self._clock()
            if self._state is BreakerState.CLOSED:
                return 0.0
            if self._state is BreakerState.OPEN:
                left = self._opened_at + self.cooldown_s - now
                if left > 0:
                    return left
                self._set(BreakerState.HALF_OPEN)
                self._probe_since = now
                return 0.0
            # half-open: one probe at a time; a probe that never reported expires
            if self._probe_since is None or now - self._probe_since > self.cooldown_s * 4:
                self._probe_since = now
                return 0.0
            return min(0.2, self.cooldown_s)

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._probe_since = None
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._probe_since = None
            if self._state is BreakerState.HALF_OPEN or self._consecutive >= self.failures:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)
