"""Load shedding: past ``CONSENT_MAX_IN_FLIGHT`` requests in one process, answer 429 at once.

Without a bound, an overloaded API queues requests until their callers time out, then
commits writes nobody waits for (docs/performance.md measured half the work wasted at 1,000
PATCH/s offered). A prompt 429 with ``Retry-After`` keeps the latency of accepted requests
near the service time and tells clients to back off. Probes and metrics are never shed."""

from __future__ import annotations

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.api.problems import problem_response

SHED = Counter("consent_api_requests_shed_total", "Requests answered 429 at the in-flight limit")
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in EXEMPT:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            SHED.inc()
            resp = problem_response(
                429,
                f"The service is at capacity ({self.limit} requests in progress); "
                "retry after the delay in Retry-After.",
                code="overloaded",
                headers={"Retry-After": "1"},
            )
            return await resp(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
