"""``consentctl parked …`` (records intake could not use) and ``consentctl outbox parked|retry
|skip`` (outbox rows the relay could not publish). Each action is audited as ``cli``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
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
from propagator.db import SERVER_SETTINGS as PROPAGATOR_SESSION
from propagator.repositories.parked import ParkedView
from propagator.unit_of_work import UnitOfWork as PropagatorUoW
from propagator.unit_of_work import unit_of_work as propagator_unit_of_work

out = Console()
err = Console(stderr=True)
parked_app = typer.Typer(help="Records the propagator's intake parked.", no_args_is_help=True)
T = TypeVar("T")


def _run(
    fn: Callable[[ParkedRepository, OperationsRepository, PropagatorUoW], Awaitable[T]],
) -> T:
    """``fn`` gets the consent service's repositories (outbox rows, the audit log) and a
    unit of work of the propagator's (its parked records; each a single statement, so no
    transaction): consentctl drives both."""
    settings, _server = resolve_database(get_settings())
    assert settings.database_url
    url = settings.database_url

    async def go() -> T:
        engine = make_engine(url, 1)
        conn = await asyncpg.connect(plain_url(url), server_settings=PROPAGATOR_SESSION)
        try:
            async with (
                unit_of_work(make_sessionmaker(engine)) as uow,
                propagator_unit_of_work(conn, atomic=False) as p,
            ):
                return await fn(uow.parked, uow.operations, p)
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
        _: ParkedRepository, __: OperationsRepository, p: PropagatorUoW
    ) -> list[ParkedView]:
        return await p.parked.page(0, limit)

    table = Table("id", "topic", "partition", "offset", "reason", "parked at", "attempts")
    for r in _run(fn):
        table.add_row(
            str(r.id),
            r.topic,
            str(r.partition),
            str(r.offset),
            r.reason,
            r.parked_at.isoformat(),
            str(r.attempts),
        )
    out.print(table)


@parked_app.command("retry")
def retry(parked_id: int) -> None:
    """Feed a parked record to intake again (the running propagator takes it within ~1 s)."""

    async def fn(_: ParkedRepository, ops: OperationsRepository, p: PropagatorUoW) -> bool:
        found = await p.parked.request_retry(parked_id)
        if found:
            await ops.audit("cli", "parked.retry", {"parked_id": parked_id}, {})
        return found

    if not _run(fn):
        raise _missing("parked record")
    out.print(f"retry requested for parked record {parked_id}")


@parked_app.command("drop")
def drop(parked_id: int) -> None:
    """Drop a parked record for good (audited)."""

    async def fn(_: ParkedRepository, ops: OperationsRepository, p: PropagatorUoW) -> bool:
        dropped = await p.parked.drop(parked_id)
        if dropped:
            scope = {"parked_id": parked_id, **asdict(dropped)}
            await ops.audit("cli", "parked.drop", scope, {"dropped": 1})
        return dropped is not None

    if not _run(fn):
        raise _missing("parked record")
    out.print(f"dropped parked record {parked_id}")


def outbox_parked(limit: int = 100) -> None:
    """Outbox rows the relay parked; each holds back its own subject's later rows."""

    async def fn(
        repo: ParkedRepository, _: OperationsRepository, __: PropagatorUoW
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
    async def fn(repo: ParkedRepository, ops: OperationsRepository, _: PropagatorUoW) -> str | None:
        subject = await repo.retry_outbox(row_id)
        if subject:
            await ops.audit("cli", "outbox.retry", {"outbox_id": row_id}, {})
        return subject

    if not _run(fn):
        raise _missing("parked outbox row")
    out.print(f"outbox row {row_id} back to the relay")


def outbox_skip(row_id: str) -> None:
    async def fn(repo: ParkedRepository, ops: OperationsRepository, _: PropagatorUoW) -> str | None:
        subject = await repo.skip_outbox(row_id, utcnow())
        if subject:
            await ops.audit("cli", "outbox.skip", {"outbox_id": row_id}, {"skipped": 1})
        return subject

    if not _run(fn):
        raise _missing("parked outbox row")
    out.print(f"outbox row {row_id} skipped: its subject's later rows go on")
