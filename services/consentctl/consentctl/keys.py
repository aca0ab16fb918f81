"""``consentctl keys``: API keys stored hashed, with scopes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.tables import ApiKey
from consent.api.auth import SCOPES, hash_key, new_key
from consent.service.unit_of_work import unit_of_work
from consent.settings import Settings
from consentctl.runtime import resolve_database

T = TypeVar("T")


def _run(settings: Settings, coro_fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings, _server = resolve_database(settings)
    assert settings.database_url

    async def go() -> T:
        engine = make_engine(settings.database_url or "", 2)
        try:
            async with unit_of_work(make_sessionmaker(engine)) as uow:
                return await coro_fn(uow.session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def create(settings: Settings, scopes: list[str], name: str | None) -> None:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        typer.echo(f"error: unknown scope(s) {bad}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    key_id, raw = new_key()

    async def add(session: AsyncSession) -> None:
        session.add(
            ApiKey(id=key_id, key_hash=hash_key(raw), name=name, scopes=sorted(set(scopes)))
        )

    _run(settings, add)
    typer.echo(
        f"Created key {key_id} with scopes {', '.join(sorted(set(scopes)))}. "
        "It is shown once; store it now:"
    )
    typer.echo(raw)


def list_keys(settings: Settings) -> None:
    async def fetch(session: AsyncSession) -> list[ApiKey]:
        return list(
            (await session.execute(select(ApiKey).order_by(col(ApiKey.created_at)))).scalars()
        )

    rows = _run(settings, fetch)
    table = Table("id", "name", "scopes", "created", "revoked")
    for r in rows:
        table.add_row(
            r.id,
            r.name or "",
            " ".join(r.scopes),
            r.created_at.isoformat(),
            r.revoked_at.isoformat() if r.revoked_at else "",
        )
    Console().print(table)


def revoke(settings: Settings, key_id: str) -> None:
    async def rev(session: AsyncSession) -> int:
        res = await session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return int(res.rowcount)  # type: ignore[attr-defined]

    if not _run(settings, rev):
        typer.echo(f"error: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
