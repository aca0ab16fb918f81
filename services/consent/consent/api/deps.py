"""Request dependencies: one unit of work (one transaction) per request, and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.api.auth import AuthError, Principal, principal_from_jwt, principal_from_key
from consent.api.freshness import note_committed
from consent.api.jwks import JwksUnavailable
from consent.api.key_cache import KeyCache
from consent.api.problems import Problem
from consent.domain.authority import Reader
from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """The request's transaction, committed here when the route returns and rolled back when
    it raises (a problem document included): routes never commit. ``scope="function"``
    below makes this run before the answer is sent, so a failed commit is the answer."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    if request.method in ("GET", "HEAD"):
        sessions = request.app.state.read_sessions  # reads need no BEGIN/ROLLBACK round trips
    async with unit_of_work(sessions) as uow:
        yield uow
    note_committed(request, uow)  # the Consent-Token header; a PATCH's write-through


UoW = Annotated[UnitOfWork, Depends(get_uow, scope="function")]


async def get_principal(request: Request, uow: UoW) -> Principal:
    """Credentials are read from the headers directly (not declared as parameters: they are
    not in the schema, and FastAPI's parameter machinery is a measurable cost per request)."""
    settings = get_settings(request)
    x_api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": 'Bearer realm="consent"'}
    try:
        if x_api_key:
            keys: KeyCache = request.app.state.keys
            cached = keys.get(x_api_key)
            if cached is None:
                generation = keys.generation
                found = await principal_from_key(x_api_key, uow.session, settings)
                cached = keys.put(x_api_key, found, generation)
            principal = cached
        elif authorization and authorization.lower().startswith("bearer "):
            jwks = getattr(request.app.state, "jwks", None)
            principal = await principal_from_jwt(authorization[7:].strip(), settings, jwks)
        else:
            raise Problem(
                401, "Credentials required: a bearer token or an X-API-Key.", headers=challenge
            )
    except AuthError as exc:
        raise Problem(401, str(exc), headers=challenge) from exc
    except JwksUnavailable as exc:  # the provider is down and no usable key is cached
        raise Problem(
            503,
            "Bearer tokens cannot be verified now: the identity provider is unavailable.",
            code="identity_provider_unavailable",
            headers={"Retry-After": "5"},
        ) from exc
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def reader_of(principal: Principal, guardian: str | None) -> Reader:
    """Who reads history or an export, for the evidence visibility rule."""
    if principal.kind == "key":
        return Reader("operator" if principal.has("admin") else "service", principal.id)
    return Reader("guardian" if guardian else "subject", principal.id)
