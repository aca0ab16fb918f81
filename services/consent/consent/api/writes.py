"""What a write records about who made it and how: actor and evidence."""

from __future__ import annotations

import hashlib

from fastapi import Request

from consent.api.auth import Principal
from consent.api.client_address import client_ip, networks
from consent.domain.model import Actor
from consent.service.context import WriteContext


def actor_for(principal: Principal, guardian: str | None) -> Actor:
    if guardian:
        return Actor("guardian", guardian)
    if principal.kind == "user":
        return Actor("subject", principal.id)
    return Actor("operator" if principal.has("admin") else "service", principal.id)


def evidence_from(
    request: Request, salt: str, notice_id: str | None, locale: str | None, gpc: bool
) -> dict[str, object]:
    settings = request.app.state.settings
    ip = client_ip(request, networks(tuple(settings.trusted_proxies))) or ""
    ev: dict[str, object] = {
        "ip_hash": hashlib.sha256(f"{salt}:{ip}".encode()).hexdigest() if ip else None,
        "user_agent": request.headers.get("user-agent", "")[:512] or None,
        "gpc": gpc,
    }
    if notice_id:
        ev["notice_id"] = notice_id
    if locale:
        ev["locale"] = locale
    return ev


def ip_salt(request: Request) -> str:
    return str(request.app.state.settings.ip_hash_salt.get_secret_value())


def write_context(
    request: Request,
    principal: Principal,
    channel: str,
    *,
    guardian: str | None = None,
    gpc: bool = False,
    note: str | None = None,
) -> WriteContext:
    """Who writes, through which channel, with the request's evidence."""
    evidence = evidence_from(request, ip_salt(request), None, None, gpc)
    if note is not None:
        evidence["note"] = note
    return WriteContext(
        channel=channel,
        actor=actor_for(principal, guardian),
        evidence=evidence,
        acting_guardian=guardian,
    )
