"""``consentctl keys``: API keys stored hashed, with scopes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update

from consent.adapters.db import make_engine, make_sessionmaker, transaction
from consent.adapters.tables import ApiKey
from consent.api.auth import SCOPES, hash_key, new_key
from consent.cli.runtime import resolve_database
from consent.settings import Settings


def _run(settings: Settings, coro_fn):  # type: ignore[no-untyped-def]
    settings, _server = resolve_database(settings)
    assert settings.database_url

    async def go():  # type: ignore[no-untyped-def]
        engine = make_engine(settings.database_url or "", 2)
        try:
            async with transaction(make_sessionmaker(engine)) as session:
                return await coro_fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def create(settings: Settings, scopes: list[str], name: str | None) -> None:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        typer.echo(f"error: unknown scope(s) {bad}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    key_id, raw = new_key()

    async def add(session):  # type: ignore[no-untyped-def]
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
    async def fetch(session):  # type: ignore[no-untyped-def]
        return list((await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars())

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
    async def rev(session):  # type: ignore[no-untyped-def]
        res = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return res.rowcount

    if not _run(settings, rev):
        typer.echo(f"error: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
