"""Per-client cap on concurrent requests, counted from the first byte of a request to its
answer (body upload included), so one client cannot hold every connection slot.

Only where the trusted-proxy setting (``CONSENT_TRUSTED_PROXIES``, issue 14) says who the
client is: behind an ingress every caller shares the ingress's address, and a cap by peer
address would throttle everyone at once. Without the setting this middleware is not
installed (api/app.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.api.admission import EXEMPT
from consent.api.problems import problem_response

SHED = Counter("consent_api_client_limited_total", "Requests answered 429 at the per-client cap")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: Any) -> list[Network]:
    """CIDRs from a JSON-decoded list, a comma-separated string, or networks."""
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else (value or [])
    return [ipaddress.ip_network(str(i).strip(), strict=False) for i in items if str(i).strip()]


def client_ip(scope: Scope, trusted: list[Network]) -> str | None:
    """The client: the rightmost ``X-Forwarded-For`` hop not in ``trusted`` when the peer is
    trusted, else the peer. TODO(issue 14): unify with ``consent/api/client_address.py``,
    which implements the same rule (API.md, CONSENT_TRUSTED_PROXIES)."""
    peer = (scope.get("client") or (None, None))[0]
    hops = [
        hop.strip()
        for name, value in scope.get("headers") or []
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
        if hop.strip()
    ] + ([peer] if peer else [])
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return hop  # not an address: that is what the last trusted hop told us
        if not any(address in net for net in trusted):
            return hop
    return hops[0] if hops else None


class ClientLimit:
    def __init__(self, app: ASGIApp, limit: int, trusted: list[Network]) -> None:
        self.app, self.limit, self.trusted = app, limit, trusted
        self.active: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = scope["type"] != "http" or scope["path"] in EXEMPT
        client = None if exempt else client_ip(scope, self.trusted)
        if client is None:
            return await self.app(scope, receive, send)
        if self.active.get(client, 0) >= self.limit:
            SHED.inc()
            resp = problem_response(
                429,
                f"Too many requests in progress from one client (at most {self.limit}); "
                "retry after the delay in Retry-After.",
                code="client_limit",
                headers={"Retry-After": "1"},
            )
            return await resp(scope, receive, send)
        self.active[client] = self.active.get(client, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active[client] -= 1
            if not self.active[client]:
                del self.active[client]
