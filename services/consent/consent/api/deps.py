"""Request dependencies: one unit of work (one transaction) per request, and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.api_keys import ApiKeyRepository
from consent.api.auth import AuthError, Principal, principal_from_jwt, principal_from_key
from consent.api.freshness import note_committed
from consent.api.jwks import JwksUnavailable
from consent.api.key_cache import KeyCache
from consent.api.problems import Problem
from consent.domain.authority import Reader
from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.settings import Settings

log = structlog.get_logger()


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
            principal = await key_principal(request.app, x_api_key, uow.api_keys, settings)
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


async def key_principal(
    app: FastAPI, raw: str, repository: ApiKeyRepository, settings: Settings
) -> Principal:
    """An API key's principal, through this worker's key cache (AuthError if unknown)."""
    keys: KeyCache = app.state.keys
    cached = keys.get(raw)
    if cached is None:
        generation = keys.generation
        cached = keys.put(raw, await principal_from_key(raw, repository, settings), generation)
    return cached


async def admin_key(app: FastAPI, settings: Settings, raw: str) -> bool:
    """Whether ``raw`` is an admin key: asked by the body limit before it reads an upload
    (api/middleware.py). Any failure is a no: the upload gets the ordinary limit."""
    try:
        async with app.state.read_sessions() as session:
            keys = UnitOfWork(session).api_keys
            return (await key_principal(app, raw, keys, settings)).has("admin")
    except AuthError:
        return False
    except Exception as exc:  # the database is down: the route will answer 503 anyway
        log.warning("upload_key_check_failed", error=type(exc).__name__)
        return False


def reader_of(principal: Principal, guardian: str | None) -> Reader:
    """Who reads history or an export, for the evidence visibility rule."""
    if principal.kind == "key":
        return Reader("operator" if principal.has("admin") else "service", principal.id)
    return Reader("guardian" if guardian else "subject", principal.id)
