"""Request dependencies: one unit of work (one transaction) per request, and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.api.auth import AuthError, Principal, principal_from_jwt, principal_from_key
from consent.api.jwks import JwksUnavailable
from consent.api.problems import Problem
from consent.domain.authority import Reader
from consent.service.context import utcnow
from consent.service.decisions import age_status_of
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
            principal = await principal_from_key(x_api_key, uow.session, settings)
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


MINOR = frozenset({"child", "teen_opt_in"})


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has(scope):
        raise Problem(403, f"This credential lacks the {scope!r} scope.")


async def require_subject_access(
    principal: Principal, scope: str, subject_id: str, uow: UnitOfWork
) -> str | None:
    """Check that the caller may act on ``subject_id``.

    Returns the guardian id when a guardian's token acts for a linked minor.
    """
    require_scope(principal, scope)
    if principal.kind != "user" or principal.id == subject_id:
        return None
    if await uow.guardians.is_active_guardian(subject_id, principal.id):
        snapshot = await uow.subjects.snapshot(subject_id)
        if age_status_of(snapshot, utcnow()) in MINOR:
            return principal.id  # a guardian acts for a linked minor, and only a minor
    raise Problem(403, "This token may not act for that subject.")


def reader_of(principal: Principal, guardian: str | None) -> Reader:
    """Who reads history or an export, for the evidence visibility rule."""
    if principal.kind == "key":
        return Reader("operator" if principal.has("admin") else "service", principal.id)
    return Reader("guardian" if guardian else "subject", principal.id)
