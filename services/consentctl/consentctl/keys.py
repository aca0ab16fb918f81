"""``consentctl keys``: API keys stored hashed, with scopes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from consent.adapters.api_keys import ApiKeyView
from consent.adapters.db import make_engine, make_sessionmaker
from consent.api.auth import SCOPES, hash_key, new_key
from consent.service.unit_of_work import UnitOfWork, unit_of_work
from consent.settings import Settings
from consentctl.runtime import resolve_database

T = TypeVar("T")


def _run(settings: Settings, coro_fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    settings, _server = resolve_database(settings)
    assert settings.database_url

    async def go() -> T:
        engine = make_engine(settings.database_url or "", 2)
        try:
            async with unit_of_work(make_sessionmaker(engine)) as uow:
                return await coro_fn(uow)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def create(settings: Settings, scopes: list[str], name: str | None) -> None:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        typer.echo(f"error: unknown scope(s) {bad}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    key_id, raw = new_key()

    async def add(uow: UnitOfWork) -> None:
        await uow.api_keys.add_key(key_id, hash_key(raw), name, sorted(set(scopes)))

    _run(settings, add)
    typer.echo(
        f"Created key {key_id} with scopes {', '.join(sorted(set(scopes)))}. "
        "It is shown once; store it now:"
    )
    typer.echo(raw)


def list_keys(settings: Settings) -> None:
    async def fetch(uow: UnitOfWork) -> list[ApiKeyView]:
        return await uow.api_keys.all()

    rows = _run(settings, fetch)
    table = Table("id", "name", "scopes", "created", "revoked")
    for r in rows:
        table.add_row(
            r.id,
            r.name or "",
            " ".join(sorted(r.scopes)),
            r.created_at.isoformat(),
            r.revoked_at.isoformat() if r.revoked_at else "",
        )
    Console().print(table)


def revoke(settings: Settings, key_id: str) -> None:
    async def rev(uow: UnitOfWork) -> bool:
        return await uow.api_keys.revoke(key_id, datetime.now(UTC))

    if not _run(settings, rev):
        typer.echo(f"error: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
