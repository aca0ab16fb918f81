"""``consentctl import FILE``: bring existing consents in (API.md, "Import rows"), with a
progress bar, a report file of every rejected row (line, column, reason) and ``--resume``
for an interrupted run. The rules are the consent service's (``service/imports.py``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consent.adapters.db import make_engine, make_sessionmaker
from consent.adapters.imports import ImportJob
from consent.service import imports as import_svc
from consent.settings import get_settings
from consentctl.runtime import resolve_database

console = Console(stderr=True)
out = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _purpose_map(path: Path | None, entries: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text())
        if not isinstance(loaded, dict):
            raise _fail(f"{path}: a mapping of their purpose ids to ours")
        mapping |= {str(k): str(v) for k, v in loaded.items()}
    for entry in entries or []:
        theirs, sep, ours = entry.partition("=")
        if not sep:
            raise _fail(f"--map {entry!r}: write THEIRS=OURS")
        mapping[theirs] = ours
    return mapping


def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[
        str | None, typer.Option(help="jsonl or csv (default: from the file name)")
    ] = None,
    mapping: Annotated[
        str | None, typer.Option(help="Another tool's export: onetrust, didomi, unsubscribe")
    ] = None,
    purpose_map: Annotated[
        Path | None, typer.Option(help="YAML or JSON: their purpose id -> our purpose")
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="THEIRS=OURS (repeatable)")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Rejected rows, JSON Lines (default: FILE.rejected.jsonl)")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Resume an interrupted import by id")] = None,
) -> None:
    """Import per-purpose choices with their original times; each subject's rows become
    one accepted change (one event). Re-running the same file imports nothing twice."""
    fmt = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
    data = file.read_bytes()
    settings, _server = resolve_database(get_settings())
    assert settings.database_url
    url = settings.database_url
    report = report or file.with_name(file.name + ".rejected.jsonl")
    mapped = _purpose_map(purpose_map, map_)

    async def go() -> ImportJob | None:
        engine = make_engine(url, 2)
        sessions = make_sessionmaker(engine)
        try:
            if resume:
                try:
                    job_id = uuid.UUID(resume)
                except ValueError:
                    raise _fail(f"{resume!r} is not a job id") from None
            else:
                job_id, source = await import_svc.start(
                    sessions, data, fmt, actor="cli", mapping=mapping, purpose_map=mapped,
                    keep_payload=False,
                )  # fmt: skip
                console.print(
                    f"import {job_id}: {source.rows} rows, {len(source.by_subject)} subjects, "
                    f"{len(source.rejected)} rejected while reading"
                )
            with Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("subjects · {task.fields[applied]} rows applied"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("import", total=None, applied=0)

                def on_progress(done: int, total: int, counts: dict[str, int]) -> None:
                    progress.update(
                        task, completed=done, total=total, applied=counts.get("applied", 0)
                    )

                try:
                    return await import_svc.run(sessions, job_id, data, on_progress=on_progress)
                except (KeyboardInterrupt, asyncio.CancelledError):
                    console.print(f"interrupted: resume with --resume {job_id}")
                    raise
        except import_svc.ImportRefused as exc:
            raise _fail(str(exc)) from None
        finally:
            await engine.dispose()

    job = asyncio.run(go())
    if job is None:
        raise _fail("another runner holds this import; try again when it stops")
    with report.open("w") as f:
        for row in job.rejected:
            f.write(json.dumps(row) + "\n")
    out.print_json(json.dumps({"job_id": str(job.id), "status": job.status, **job.counts}))
    if job.rejected:
        console.print(f"{len(job.rejected)} rejected rows (line, column, reason): {report}")
