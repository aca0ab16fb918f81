"""``consentctl parked …`` (records intake could not use) and ``consentctl outbox parked|retry
|skip`` (outbox rows the relay could not publish). Each action is audited as ``cli``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.operations import OperationsRepository
from consent.adapters.parked import ParkedRepository
from consent.service.context import utcnow
from consent.service.unit_of_work import unit_of_work
from consent.settings import get_settings
from consent_common.db import plain_url
from consentctl.runtime import resolve_database
from propagator import admin as propagator_admin
from propagator.db import SERVER_SETTINGS as PROPAGATOR_SESSION

out = Console()
err = Console(stderr=True)
parked_app = typer.Typer(help="Records the propagator's intake parked.", no_args_is_help=True)
T = TypeVar("T")


def _run(
    fn: Callable[[ParkedRepository, OperationsRepository, asyncpg.Connection], Awaitable[T]],
) -> T:
    """``fn`` gets the consent service's repositories (outbox rows, the audit log) and a
    connection to the propagator's schema (its parked records): consentctl drives both."""
    settings, _server = resolve_database(get_settings())
    assert settings.database_url
    url = settings.database_url

    async def go() -> T:
        engine = make_engine(url, 1)
        conn = await asyncpg.connect(plain_url(url), server_settings=PROPAGATOR_SESSION)
        try:
            async with unit_of_work(make_sessionmaker(engine)) as uow:
                return await fn(uow.parked, uow.operations, conn)
        finally:
            await conn.close()
            await engine.dispose()

    return asyncio.run(go())


def _missing(what: str) -> typer.Exit:
    err.print(f"[red]error:[/red] no {what} with that id")
    return typer.Exit(1)


@parked_app.command("list")
def list_parked(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100) -> None:
    """Parked records, oldest first: where they were and why."""

    async def fn(
        _: ParkedRepository, __: OperationsRepository, conn: asyncpg.Connection
    ) -> list[dict[str, Any]]:
        return await propagator_admin.parked(conn, 0, limit)

    table = Table("id", "topic", "partition", "offset", "reason", "parked at", "attempts")
    for r in _run(fn):
        table.add_row(
            str(r["id"]),
            r["topic"],
            str(r["partition"]),
            str(r["offset"]),
            r["reason"],
            r["parked_at"].isoformat(),
            str(r["attempts"]),
        )
    out.print(table)


@parked_app.command("retry")
def retry(parked_id: int) -> None:
    """Feed a parked record to intake again (the running propagator takes it within ~1 s)."""

    async def fn(_: ParkedRepository, ops: OperationsRepository, conn: asyncpg.Connection) -> bool:
        found = await propagator_admin.request_retry(conn, parked_id)
        if found:
            await ops.audit("cli", "parked.retry", {"parked_id": parked_id}, {})
        return found

    if not _run(fn):
        raise _missing("parked record")
    out.print(f"retry requested for parked record {parked_id}")


@parked_app.command("drop")
def drop(parked_id: int) -> None:
    """Drop a parked record for good (audited)."""

    async def fn(_: ParkedRepository, ops: OperationsRepository, conn: asyncpg.Connection) -> bool:
        dropped = await propagator_admin.drop(conn, parked_id)
        if dropped:
            scope = {"parked_id": parked_id, **dropped}
            await ops.audit("cli", "parked.drop", scope, {"dropped": 1})
        return dropped is not None

    if not _run(fn):
        raise _missing("parked record")
    out.print(f"dropped parked record {parked_id}")


def outbox_parked(limit: int = 100) -> None:
    """Outbox rows the relay parked; each holds back its own subject's later rows."""

    async def fn(
        repo: ParkedRepository, _: OperationsRepository, __: asyncpg.Connection
    ) -> list[dict[str, Any]]:
        return await repo.outbox_rows(limit)

    table = Table("id", "subject", "type", "sequence", "parked at", "error")
    for r in _run(fn):
        table.add_row(
            str(r["id"]),
            r["aggregateid"],
            r["type"],
            str(r["sequence"]),
            r["parked_at"].isoformat(),
            r["last_error"] or "",
        )
    out.print(table)


def outbox_retry(row_id: str) -> None:
    async def fn(
        repo: ParkedRepository, ops: OperationsRepository, _: asyncpg.Connection
    ) -> str | None:
        subject = await repo.retry_outbox(row_id)
        if subject:
            await ops.audit("cli", "outbox.retry", {"outbox_id": row_id}, {})
        return subject

    if not _run(fn):
        raise _missing("parked outbox row")
    out.print(f"outbox row {row_id} back to the relay")


def outbox_skip(row_id: str) -> None:
    async def fn(
        repo: ParkedRepository, ops: OperationsRepository, _: asyncpg.Connection
    ) -> str | None:
        subject = await repo.skip_outbox(row_id, utcnow())
        if subject:
            await ops.audit("cli", "outbox.skip", {"outbox_id": row_id}, {"skipped": 1})
        return subject

    if not _run(fn):
        raise _missing("parked outbox row")
    out.print(f"outbox row {row_id} skipped: its subject's later rows go on")
