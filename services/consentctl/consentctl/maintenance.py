"""``consentctl topic rewind``, ``consentctl state rebuild`` and ``state republish``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import asyncpg
import typer
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from consent.adapters.audit import AuditRecord, write_audit
from consent.adapters.subject_store import UPSERT_STATE, state_rows
from consent.domain.entries import project
from consent.settings import Settings, get_settings
from consent_common.db import plain_url
from consent_common.kafka import client_kwargs
from consentctl.ops import _db, _fail, parse_time
from consentctl.runtime import resolve_kafka

console = Console(stderr=True)
out = Console()
topic_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
state_app = typer.Typer(help="The current-state projection.", no_args_is_help=True)


async def group_members(settings: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = 0
    for response in described:
        for g in response.groups:
            members += len(g[5]) if len(g) > 5 else 0  # (error, group, state, type, proto, members)
    return members


async def rewind(
    settings: Settings, group: str, to_ms: int, topic: str, join_timeout_s: float = 60
) -> list[tuple[int, int | None, int]]:
    """Move ``group``'s committed offsets on ``topic`` to the first record at or after ``to_ms``.

    It joins the group as its only member (the caller checked there is no other), so the
    commit is accepted by any broker whatever state the group was left in."""
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **client_kwargs(settings),
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + join_timeout_s
        while not consumer.assignment() and loop.time() < deadline:
            await consumer.getmany(timeout_ms=200, max_records=1)
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not tps:
            raise _fail(f"could not join group {group!r} on topic {topic!r}")
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms))
        ends = await consumer.end_offsets(tps)
        moves, offsets = [], {}
        for tp in tps:
            before = await consumer.committed(tp)
            target = found[tp].offset if found.get(tp) is not None else ends[tp]
            offsets[tp] = target
            moves.append((tp.partition, before, target))
        await consumer.commit(offsets)
        return moves
    finally:
        await consumer.stop()


@topic_app.command("rewind")
def topic_rewind(
    group: Annotated[str, typer.Option(help="The consumer group to move")],
    to: Annotated[str, typer.Option(help="Time to re-read from (ISO 8601)")],
    topic: Annotated[str | None, typer.Option(help="Default: consent.events.v1")] = None,
) -> None:
    """Move another service's consumer group back to a time; refused while it has members."""
    settings = resolve_kafka(get_settings())
    when = parse_time(to, "--to")
    name = topic or settings.events_topic

    async def go() -> list[tuple[int, int | None, int]]:
        if await group_members(settings, group):
            raise _fail(f"group {group!r} has live members: stop its consumers first", 3)
        return await rewind(settings, group, int(when.timestamp() * 1000), name)

    moves = asyncio.run(go())
    table = Table("partition", "committed before", "committed now", title=f"{group} on {name}")
    for partition, before, after in moves:
        table.add_row(str(partition), "-" if before is None else str(before), str(after))
    out.print(table)


STATE_SQL = "SELECT subject_id, purpose, status, sequence FROM consent_state"
ENTRIES_SQL = """
SELECT subject_id, sequence, type, changes::text AS changes, detail::text AS detail,
       policy_version, channel, actor_type, actor_id, occurred_at
FROM consent_ledger ORDER BY subject_id, sequence
"""


async def rebuild(database_url: str, apply: bool) -> list[dict[str, Any]]:
    """Compare the projection with a replay of the ledger; fix it when ``apply``."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        async with conn.transaction():
            current = {
                (r["subject_id"], r["purpose"]): (r["status"], r["sequence"])
                for r in await conn.fetch(STATE_SQL + " FOR UPDATE")
            }
            by_subject: dict[str, list[dict[str, Any]]] = {}
            for r in await conn.fetch(ENTRIES_SQL):
                d = dict(r)
                d["changes"] = json.loads(d["changes"] or "[]")
                d["detail"] = json.loads(d["detail"] or "{}")
                by_subject.setdefault(d["subject_id"], []).append(d)
            expected = {
                (sid, p): rec
                for sid, entries in by_subject.items()
                for p, rec in project(entries).items()
            }
            diffs = []
            for key in sorted(set(current) | set(expected)):
                want = expected.get(key)
                have = current.get(key)
                wanted = (want.status, want.sequence) if want else None
                if wanted != have:
                    diffs.append(
                        {
                            "subject_id": key[0],
                            "purpose": key[1],
                            "projection": have,
                            "ledger": (want.status, want.sequence) if want else None,
                        }
                    )
                    if apply and want is None:
                        await conn.execute(
                            "DELETE FROM consent_state WHERE subject_id = $1 AND purpose = $2", *key
                        )
                    elif apply and want is not None:
                        await conn.execute(UPSERT_STATE, key[0], state_rows([want]))
            if apply and diffs:
                await write_audit(
                    conn, [AuditRecord("cli", "state.rebuild", {}, {"fixed": len(diffs)})]
                )
        return diffs
    finally:
        await conn.close()


@state_app.command("rebuild")
def state_rebuild(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only")] = False,
) -> None:
    """Recompute the current-state projection from the ledger: report, then fix."""
    diffs = asyncio.run(rebuild(_db(get_settings()), apply=not dry_run))
    if not diffs:
        out.print("projection matches the ledger: nothing to fix")
        return
    table = Table("subject", "purpose", "projection had", "ledger says")
    for d in diffs:
        table.add_row(d["subject_id"], d["purpose"], str(d["projection"]), str(d["ledger"]))
    out.print(table)
    out.print(f"{len(diffs)} difference(s) " + ("reported (dry run)" if dry_run else "fixed"))
    if dry_run:
        raise typer.Exit(1)


@state_app.command("republish")
def state_republish(
    page_size: Annotated[int, typer.Option(help="Subjects read per query")] = 1000,
) -> None:
    """Rebuild the consent.state.v1 topic from the projection: every subject's latest
    decisions, a tombstone for each erased subject (for a new cluster or a fresh view)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from consentctl.republish import republish

    settings = resolve_kafka(get_settings())
    settings = settings.model_copy(update={"database_url": _db(settings)})
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"republishing to {settings.state_topic}", total=None)
        counts = asyncio.run(
            republish(
                settings,
                page_size=page_size,
                on_total=lambda n: progress.update(task, total=n),
                on_progress=lambda n: progress.advance(task, n),
            )
        )
    out.print(
        f"republished {counts['subjects']} subject(s) to {settings.state_topic} "
        f"({counts['tombstones']} tombstone(s); {counts['again']} changed meanwhile and "
        "were published again)"
    )
