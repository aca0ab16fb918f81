"""Operator commands: replay, deliveries (list, redrive) and the audit log. Topic rewind and
state rebuild are in maintenance.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.operations import OperationsRepository
from consent.catalog import unknown_purposes
from consent.service import replay as replay_svc
from consent.service.unit_of_work import unit_of_work
from consent.settings import Settings, get_settings
from consent_common.db import plain_url
from consentctl.runtime import known_processors_for, resolve_database
from propagator.db import SERVER_SETTINGS as PROPAGATOR_SESSION
from propagator.unit_of_work import unit_of_work as propagator_unit_of_work

console = Console(stderr=True)
out = Console()
deliveries_app = typer.Typer(
    help="Deliveries to processors and dead letters.", no_args_is_help=True
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def parse_time(value: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(
            f"{name}: {value!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _db(settings: Settings) -> str:
    settings, _server = resolve_database(settings)
    assert settings.database_url
    return settings.database_url


def replay(
    since: Annotated[str | None, typer.Option(help="Start of the window (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="End of the window (default: now)")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject")] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="Only these purposes")] = None,
    processor: Annotated[
        list[str] | None,
        typer.Option(help="Deliver only to these processors (never re-published to the topic)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent")] = False,
    rate: Annotated[float | None, typer.Option(help="Subjects per second at most")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume an interrupted job by id")] = None,
) -> None:
    """Replay subjects' current decisions from the ledger, marked replay: true."""
    settings = get_settings()
    known = known_processors_for(settings)
    url = _db(settings)
    if rate is not None and rate <= 0:
        raise _fail("--rate must be positive")

    async def go() -> dict[str, Any]:
        engine = make_engine(url, 4)
        sessions = make_sessionmaker(engine)
        try:
            if resume:
                try:
                    job = await replay_svc.resume(sessions, uuid.UUID(resume))
                except ValueError as exc:
                    raise _fail(str(exc)) from None
            else:
                if since is None:
                    raise _fail("--since is required (or --resume JOB_ID)")
                if bad := unknown_purposes(purpose or []):
                    raise _fail(f"unknown purpose(s): {', '.join(bad)}")
                req = replay_svc.ReplayRequest(
                    since=parse_time(since, "--since"),
                    until=parse_time(until, "--until") if until else datetime.now(UTC),
                    actor="cli",
                    subject_id=subject,
                    purposes=purpose or [],
                    processors=processor or [],
                    dry_run=dry_run,
                    rate=rate,
                )
                try:
                    async with unit_of_work(sessions) as uow:
                        job = await replay_svc.create_job(uow, req, known)
                except replay_svc.ReplayError as exc:
                    raise _fail(str(exc)) from None
                except replay_svc.ReplayConflict as exc:
                    raise _fail(str(exc), 3) from None
            return await _drive(sessions, job, known, rate or job.params.get("rate"))
        finally:
            await engine.dispose()

    summary = asyncio.run(go())
    out.print_json(json.dumps(summary))


async def _drive(
    sessions: Any, job: Any, known: dict[str, Any], rate: float | None
) -> dict[str, Any]:
    label = "dry run" if job.dry_run else "replaying"
    progress = Progress(
        TextColumn(f"{label} {str(job.id)[:8]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} subjects/s"),
        TextColumn("{task.fields[emitted]} sent"),
        TimeElapsedColumn(),
        console=console,
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    samples: list[dict[str, Any]] = []
    done, emitted = job.done, job.emitted
    with progress:
        task = progress.add_task(
            "replay", total=job.total, completed=done, rate=0.0, emitted=emitted
        )
        try:
            while True:
                result = await replay_svc.run_batch(
                    sessions, job.id, known, batch=min(100, int(rate or 100) or 1)
                )
                if result is None:
                    raise _fail("the job is held by another runner", 3)
                if result.finished:
                    break
                done += result.subjects
                emitted += result.emitted
                samples += result.samples[: max(0, 5 - len(samples))]
                elapsed = max(loop.time() - start, 1e-6)
                progress.update(
                    task, completed=done, rate=(done - job.done) / elapsed, emitted=emitted
                )
                if rate:
                    await asyncio.sleep(result.subjects / rate)
        except (KeyboardInterrupt, asyncio.CancelledError):
            await replay_svc.interrupt(sessions, job.id)
            console.print(f"interrupted: resume with --resume {job.id}")
            raise
    if job.dry_run:
        console.print("[bold]dry run[/bold]: nothing was sent; first events it would send:")
        for s in samples:
            out.print_json(json.dumps(s, default=str))
    return {
        "job_id": str(job.id),
        "status": "completed",
        "dry_run": job.dry_run,
        "subjects": done,
        "emitted": emitted,
    }


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[str | None, typer.Option(help="pending, delivered, superseded, dead")] = None,
    processor: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """List deliveries (for example the dead letters of one processor)."""
    if status not in (None, "pending", "delivered", "superseded", "dead"):
        raise _fail(f"unknown status {status!r}")
    rows = asyncio.run(
        _with_propagator(
            _db(get_settings()),
            lambda uow: uow.deliveries.page(status, processor, None, limit),
        )
    )
    table = Table("id", "processor", "subject", "seq", "type", "status", "attempts", "last error")
    for r in rows:
        table.add_row(
            str(r.id),
            r.processor,
            r.subject_id,
            str(r.sequence),
            r.event_type,
            r.status,
            str(r.attempts),
            (r.last_error or "")[:60],
        )
    out.print(table)


@deliveries_app.command("redrive")
def deliveries_redrive(
    delivery_id: Annotated[str | None, typer.Argument(help="A dead delivery's id")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead delivery (of --processor)")
    ] = False,
    processor: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Send dead deliveries again with a fresh attempt budget."""
    settings = get_settings()
    if (delivery_id is None) == (not all_):
        raise _fail("give one delivery id, or --all [--processor NAME]")
    known = known_processors_for(settings)
    if processor and known and processor not in known:
        raise _fail(f"unknown processor {processor!r}; known: {', '.join(sorted(known))}")
    try:
        ids = [uuid.UUID(delivery_id)] if delivery_id else None
    except ValueError:
        raise _fail(f"{delivery_id!r} is not a delivery id") from None

    url = _db(settings)

    async def run(ops: OperationsRepository) -> list[str]:
        # the propagator's deliveries (its schema), audited in the one timeline
        redriven: list[str] = await _with_propagator(
            url, lambda uow: uow.deliveries.redrive(ids, processor)
        )
        await ops.audit(
            "cli",
            "delivery.redrive",
            {"delivery_id": delivery_id, "processor": processor, "all": all_},
            {"redriven": len(redriven)},
            reference=delivery_id,
        )
        return redriven

    redriven = asyncio.run(_with_ops(url, run))
    if delivery_id and not redriven:
        raise _fail("no dead delivery with that id", 1)
    out.print(f"redriven: {len(redriven)}")


def audit(limit: Annotated[int, typer.Option()] = 50) -> None:
    """The operator audit log, newest first."""
    rows = asyncio.run(_with_ops(_db(get_settings()), lambda ops: ops.audit_entries(None, limit)))
    table = Table("id", "at", "actor", "action", "scope", "counts", "reference")
    for r in rows:
        table.add_row(
            str(r.id),
            r.at.isoformat(),
            r.actor,
            r.action,
            json.dumps(r.scope),
            json.dumps(r.counts),
            r.reference or "",
        )
    out.print(table)


async def _with_propagator(url: str, fn: Any) -> Any:
    """``fn(uow)`` in one of the propagator's units of work (its schema), committed when it
    returns."""
    conn = await asyncpg.connect(plain_url(url), server_settings=PROPAGATOR_SESSION)
    try:
        async with propagator_unit_of_work(conn) as uow:
            return await fn(uow)
    finally:
        await conn.close()


async def _with_ops(url: str, fn: Any) -> Any:
    """``fn(operations)`` in one unit of work, committed when it returns."""
    engine = make_engine(url, 2)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as uow:
            return await fn(uow.operations)
    finally:
        await engine.dispose()
