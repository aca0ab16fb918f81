"""Which client is this: the address a request came from, believing ``X-Forwarded-For``
only from hops the operator trusts (``CONSENT_TRUSTED_PROXIES``). Anyone can send the
header, so without trusted proxies the peer address counts. Used for the hashed IP in
evidence and for per-client limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=32)
def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address, trusted: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in trusted)


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops += value.decode("latin-1").split(",")
    return hops


def client_ip(scope_or_request: Mapping[str, Any] | Any, trusted: Sequence[Network]) -> str | None:
    """The client's address: walking ``X-Forwarded-For`` from the right, the first hop that
    is not a trusted proxy. The peer itself must be trusted for the header to count; a
    malformed entry stops the walk at the last trusted hop."""
    scope = scope_or_request if isinstance(scope_or_request, Mapping) else scope_or_request.scope
    client = scope.get("client")
    peer = client[0] if client else None
    if not peer or not trusted:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, trusted):
        return peer
    for hop in reversed(_forwarded_for(scope.get("headers") or [])):
        ip = _address(hop)
        if ip is None:
            break
        current = ip
        if not _trusted(ip, trusted):
            break
    return str(current)
