"""``consentctl verify propagation``: the invariant, checked. Every processor holds the
answer the decision API gives (on its purposes), as far as its acknowledged deliveries
tell; every difference is listed with its age. ``--repair`` sends current decisions to the
drifted processors and waits until they acknowledged them."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consent.adapters.db import make_engine, make_sessionmaker
from consent.domain.drift import Difference
from consent.service import drift as drift_svc
from consent.service import replay as replay_svc
from consent.service.drift_repair import create_repair_job
from consent.service.unit_of_work import unit_of_work
from consent.settings import get_settings
from consentctl.ops import _db, _drive, _fail, console, out
from consentctl.runtime import known_processors_for

verify_app = typer.Typer(help="Check the platform's invariants.", no_args_is_help=True)


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[found]} differences"),
        TimeElapsedColumn(),
        console=console,
    )


async def _scan(sessions: Any, known: dict[str, Any], subject: str | None) -> drift_svc.Page:
    async with unit_of_work(sessions) as uow:
        total = await uow.drift.count_subjects(subject)
    items: list[Difference] = []
    cursor: str | None = ""
    scanned = unknown = 0
    with _progress("comparing subjects") as progress:
        task = progress.add_task("verify", total=total, found=0)
        while cursor is not None:
            async with unit_of_work(sessions) as uow:
                page = await drift_svc.report_page(
                    uow, known, datetime.now(UTC), cursor=cursor, subject_id=subject
                )
            items += page.items
            scanned += page.scanned
            unknown += page.unknown
            cursor = page.next_cursor
            progress.update(task, completed=scanned, found=len(items))
    return drift_svc.Page(items, None, scanned, unknown)


def _show(items: list[Difference], now: datetime, shown: int) -> None:
    if not items:
        return
    per = Counter(d.processor for d in items)
    oldest: dict[str, datetime] = {}
    for d in items:
        since = d.since or now
        oldest[d.processor] = min(oldest.get(d.processor, since), since)
    table = Table("processor", "differences", "subjects", "oldest", title="drift")
    for name in sorted(per):
        subjects = len({d.subject_id for d in items if d.processor == name})
        age = (now - oldest[name]).total_seconds()
        table.add_row(name, str(per[name]), str(subjects), f"{age:.0f} s ago")
    console.print(table)
    detail = Table("subject", "processor", "purpose", "delivered", "current", "since")
    for d in items[:shown]:
        since = d.since or now
        detail.add_row(d.subject_id, d.processor, d.purpose, str(d.delivered).lower(),
                       str(d.current).lower(), since.isoformat())  # fmt: skip
    console.print(detail)
    if len(items) > shown:
        console.print(f"… and {len(items) - shown} more (GET /v1/admin/drift lists them all)")


async def _remaining(
    sessions: Any, known: dict[str, Any], subjects: list[str], wait_s: float
) -> list[Difference]:
    """The differences left among ``subjects`` once the processors acknowledged the repair
    (or ``wait_s`` passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        async with unit_of_work(sessions) as uow:
            result = await drift_svc.compare(uow, subjects, known, datetime.now(UTC))
        left = result.differences
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.5)


@verify_app.command("propagation")
def propagation(
    processor: Annotated[str | None, typer.Option(help="Only this processor")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Send current decisions to drifted processors")
    ] = False,
    wait: Annotated[
        float, typer.Option(min=0, help="With --repair: seconds to wait for acknowledgements")
    ] = 60.0,
    show: Annotated[int, typer.Option(min=0, help="Differences listed at most")] = 20,
) -> None:
    """Compare what every processor last acknowledged with the decision API's answers now.
    Exits 1 when a processor holds a wrong answer (after --repair: still holds one)."""
    settings = get_settings()
    known = known_processors_for(settings)
    if not known:
        raise _fail("no processors configured (CONSENT_PROCESSORS_FILE)")
    if processor is not None:
        if processor not in known:
            raise _fail(f"unknown processor {processor!r}; known: {', '.join(sorted(known))}")
        known = {processor: known[processor]}
    url = _db(settings)

    async def go() -> dict[str, Any]:
        engine = make_engine(url, 4)
        sessions = make_sessionmaker(engine)
        try:
            found = await _scan(sessions, known, subject)
            now = datetime.now(UTC)
            _show(found.items, now, show)
            summary: dict[str, Any] = {
                "subjects": found.scanned,
                "differences": len(found.items),
                "by_processor": dict(Counter(d.processor for d in found.items)),
                "unknown": found.unknown,
            }
            if repair:
                summary |= {"repairs_sent": 0, "remaining": len(found.items)}
            if found.items and repair:
                try:
                    async with unit_of_work(sessions) as uow:
                        job = await create_repair_job(uow, "cli", known, processor, subject)
                except replay_svc.ReplayConflict as exc:
                    raise _fail(str(exc), 3) from None
                done = await _drive(sessions, job, known, None)
                drifted = sorted({d.subject_id for d in found.items})
                left = await _remaining(sessions, known, drifted, wait)
                summary |= {"repair_job": done["job_id"], "repairs_sent": done["emitted"],
                            "remaining": len(left)}  # fmt: skip
                _show(left, datetime.now(UTC), show)
            return summary
        finally:
            await engine.dispose()

    summary = asyncio.run(go())
    out.print_json(json.dumps(summary))
    left = summary.get("remaining", summary["differences"])
    if left:
        console.print(
            f"[red]drift:[/red] {left} difference(s)" + ("" if repair else "; repair with --repair")
        )
        raise typer.Exit(1)
    console.print("[green]no drift:[/green] every processor holds the decision API's answers")
