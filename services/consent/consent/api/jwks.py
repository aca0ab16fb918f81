"""The identity provider's signing keys (JWKS), kept so that its trouble never stalls us.

Fetched with an async client and a short timeout (never on the event loop's thread), one
refresh at a time however many requests wait, refreshed in the background when old, and
the last good keys served while the provider is slow or down, for a bounded time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import structlog

log = structlog.get_logger()


class JwksUnavailable(Exception):
    """No usable keys: the provider is down and nothing (fresh enough) is cached."""


class UnknownKey(Exception):
    """The provider answered, and it has no key with this id."""


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        refresh_s: float,
        max_stale_s: float,
        min_refetch_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout_s, self.refresh_s, self.max_stale_s = timeout_s, refresh_s, max_stale_s
        self.min_refetch_s = min_refetch_s  # unknown kids cannot make us hammer the provider
        self.clock = clock
        self.keys: dict[str | None, Any] = {}
        self.fetched_at: float | None = None
        self.attempted_at = float("-inf")
        self.last_failed = False
        self.fetches = 0
        self._task: asyncio.Task[None] | None = None

    def _age(self) -> float:
        return float("inf") if self.fetched_at is None else self.clock() - self.fetched_at

    async def key_for(self, kid: str | None) -> Any:
        age = self._age()
        if kid in self.keys and age < self.max_stale_s:
            if age >= self.refresh_s and (self._task is None or self._task.done()):
                if self.last_failed:  # once per refresh attempt, not once per request
                    log.warning("jwks_stale", age_s=round(age, 1))
                self._refresh()  # in the background: this request uses the cached key
            return self.keys[kid]
        recently = self.clock() - self.attempted_at < (
            1.0 if self.fetched_at is None or self.last_failed else self.min_refetch_s
        )
        if not recently or (self._task is not None and not self._task.done()):
            await asyncio.shield(self._refresh())
        if kid in self.keys and self._age() < self.max_stale_s:
            return self.keys[kid]
        if self.last_failed or self._age() >= self.max_stale_s:
            raise JwksUnavailable("the identity provider's keys are unavailable")
        raise UnknownKey(f"no signing key with kid {kid!r}")

    def _refresh(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self.attempted_at = self.clock()
            self._task = asyncio.get_running_loop().create_task(self._fetch())
        return self._task

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with (
                asyncio.timeout(self.timeout_s),  # a hard bound, even for a dribbling server
                httpx.AsyncClient(timeout=self.timeout_s) as client,
            ):
                response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = _parse(response.json())
        except Exception as exc:  # any failure: keep the last good keys
            self.last_failed = True
            log.warning(
                "jwks_refresh_failed",
                error_type=type(exc).__name__,
                cached_keys=len(self.keys),
                age_s=None if self.fetched_at is None else round(self._age(), 1),
            )
            return
        self.keys, self.fetched_at, self.last_failed = keys, self.clock(), False


def _parse(data: Any) -> dict[str | None, Any]:
    """Signing keys by kid (RSA only: the algorithms accepted are RS256); a lone key without
    a kid also answers tokens without one."""
    found: dict[str | None, Any] = {}
    for jwk in jwt.PyJWKSet.from_dict(data).keys:
        if jwk.key_type == "RSA" and (jwk.public_key_use in (None, "sig")):
            found[jwk.key_id] = jwk.key
    if not found:
        raise ValueError("no RSA signing key in the JWKS")
    if len(found) == 1:
        found.setdefault(None, next(iter(found.values())))
    return found
