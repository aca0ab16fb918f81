"""Valid API keys, cached per worker with the snapshots' discipline: every commit to
``api_keys`` (a revocation, a new key) drops the cache through the change feed, and the cache
is used only while the feed is live; an entry older than the maximum age is read again.

So a revoked key stops working once the revocation's notification reaches the worker
(milliseconds), and at worst after ``CONSENT_VIEW_MAX_AGE_S`` (tests/test_freshness.py).
Unknown keys are never cached (a flood of made-up keys cannot fill it)."""

from __future__ import annotations

import hashlib
import time

from consent.api.auth import Principal

MAX_KEYS = 10_000


class KeyCache:
    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.live = False
        self.generation = 0  # bumped by every drop: a read in flight during one is not kept
        self._keys: dict[bytes, tuple[float, Principal]] = {}

    @staticmethod
    def _digest(raw: str) -> bytes:
        return hashlib.sha256(raw.encode()).digest()

    def get(self, raw: str) -> Principal | None:
        if not self.live:
            return None
        hit = self._keys.get(self._digest(raw))
        if hit is None or time.monotonic() - hit[0] > self.max_age_s:
            return None
        return hit[1]

    def put(self, raw: str, principal: Principal, generation: int) -> Principal:
        """Keep a principal read from the database (while the feed is live) unless the
        keys changed since ``generation`` was taken, before the read."""
        if self.live and generation == self.generation:
            if len(self._keys) >= MAX_KEYS:
                self._keys.clear()
            self._keys[self._digest(raw)] = (time.monotonic(), principal)
        return principal

    def clear(self) -> None:
        self._keys.clear()
        self.generation += 1

    def set_live(self, live: bool) -> None:
        self.clear()
        self.live = live
