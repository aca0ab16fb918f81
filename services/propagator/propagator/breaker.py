"""Two guards in front of a processor, per propagator replica: a rate limit and a circuit
breaker. Pure (a clock is passed in), so their rules have fast unit tests.

- ``RateLimiter``: a token bucket; at most ``rate`` requests a second after a burst of
  ``burst``, what a processor's ``rate_limit_per_s`` asks of each replica.
- ``CircuitBreaker``: after ``threshold`` retryable failures in a row the circuit opens and
  nothing is sent for ``open_s``; then one probe is let through (half-open). A success
  closes it; a failure opens it again for twice as long, up to ``max_open_s``. So a processor
  that is down gets a probe now and then instead of every due retry at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum

Clock = Callable[[], float]


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None, clock: Clock = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst, self.clock = rate, burst or max(1.0, rate / 10), clock
        self.tokens, self.stamp = self.burst, clock()

    def delay(self) -> float:
        """Take a token: 0 when one is there now, else how long to wait for it (reserved)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 5,
        open_s: float = 1.0,
        max_open_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold, self.base_open_s, self.max_open_s = threshold, open_s, max_open_s
        self.clock = clock
        self.state = Circuit.CLOSED
        self.failures = 0
        self.open_s = open_s
        self.opened_at = 0.0

    def permits(self) -> int | None:
        """How many requests may go now: None (no limit) when closed, 1 (the probe) when the
        open period is over, 0 while open."""
        if self.state is Circuit.CLOSED:
            return None
        if self.state is Circuit.OPEN and self.clock() - self.opened_at >= self.open_s:
            self.state = Circuit.HALF_OPEN
        return 1 if self.state is Circuit.HALF_OPEN else 0

    def success(self) -> None:
        self.state, self.failures, self.open_s = Circuit.CLOSED, 0, self.base_open_s

    def failure(self) -> None:
        """A retryable failure (connection error, timeout, 408, 429, 5xx)."""
        if self.state is Circuit.HALF_OPEN:  # the probe failed: wait longer
            self.open_s = min(self.max_open_s, self.open_s * 2)
            self._open()
            return
        self.failures += 1
        if self.state is Circuit.CLOSED and self.failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self.state, self.opened_at = Circuit.OPEN, self.clock()

    def seconds_until_probe(self) -> float:
        if self.state is not Circuit.OPEN:
            return 0.0
        return max(0.0, self.open_s - (self.clock() - self.opened_at))
