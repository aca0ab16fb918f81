"""The propagator's HTTP API, as the consent service's admin endpoints use it: deliveries,
redrive and parked records are the propagator's; the consent service forwards, never reads
its tables. ``CONSENT_PROPAGATOR_URL`` and ``CONSENT_PROPAGATOR_API_KEY``."""

from __future__ import annotations

from typing import Any

import httpx

from consent.settings import Settings

TIMEOUT_S = 5.0


class PropagatorUnavailable(Exception):
    """Not configured, not reachable, or it failed: the caller answers 503."""


class PropagatorAPI:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.propagator_url
        self.key = settings.propagator_api_key
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def call(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """The propagator's answer; 2xx and 4xx are returned, anything else raises."""
        if not self.url or self.key is None:
            raise PropagatorUnavailable("CONSENT_PROPAGATOR_URL / _API_KEY are not set")
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url.rstrip("/"),
                timeout=TIMEOUT_S,
                headers={"X-API-Key": self.key.get_secret_value()},
            )
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._client.request(method, path, params=query)
        except httpx.HTTPError as exc:
            raise PropagatorUnavailable(type(exc).__name__) from exc
        if r.status_code in (401, 403) or r.status_code >= 500:
            raise PropagatorUnavailable(f"HTTP {r.status_code}")
        return r
