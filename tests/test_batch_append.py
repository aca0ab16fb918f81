"""The set-based append on real PostgreSQL: a chunk of many subjects written by
``record_many`` (one statement) leaves exactly the ledger rows, hashes, evidence,
consent_state rows, subject heads and events that ``record`` leaves writing them one by one;
and the change feed's row triggers still notify once per subject written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.aliases import AliasLink
from consent.domain.entries import PendingEntry
from consent.domain.events import DomainEvent
from consent.domain.model import Actor, Change, PurposeRecord, SubjectSnapshot
from consent.service.context import WriteContext
from consent.service.recorder import load_policies, record, record_many
from consent.service.unit_of_work import UnitOfWork, unit_of_work

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = [f"d-old-{i:02d}" for i in range(6)]  # written once before the chunk
NEW = [f"d-new-{i:02d}" for i in range(14)]
PERSON, ALIAS = "d-person", "d-zalias"  # the alias is merged into the person
CHUNK = [*OLD, *NEW, PERSON, ALIAS]
Item = tuple[SubjectSnapshot, PendingEntry, WriteContext]


@pytest.fixture
def sessions(
    engines: list[async_sessionmaker[AsyncSession]],
) -> async_sessionmaker[AsyncSession]:
    return engines[0]


def ctx(i: int, **kw: Any) -> WriteContext:
    return WriteContext(
        channel="web" if i % 2 else "import",
        actor=Actor("subject", f"d-{i}") if i % 3 else Actor("operator", "ops"),
        now=NOW + timedelta(seconds=i),
        evidence={"n": i, "at": NOW + timedelta(seconds=i)},
        **kw,
    )


def entry(i: int, snapshot: SubjectSnapshot) -> PendingEntry:
    """A different kind of change per subject: grants with expiry, a jurisdiction, a
    birth date, records carried with their own provenance, a GPC opt-out."""
    was = snapshot.records.get("marketing_email")
    email = Change("marketing_email", was.status if was else "unset", "granted")  # type: ignore[arg-type]
    sale = Change("sale", "unset", "denied")
    kind = i % 5
    if kind == 0:
        return PendingEntry("consent.changed", (email,), validity_days={"marketing_email": 30})
    if kind == 1:
        return PendingEntry("consent.changed", (sale,), profile={"jurisdiction": "US-CA"})
    if kind == 2:
        return PendingEntry(
            "consent.changed", (email, sale), profile={"birth_date": date(2013, 3, i + 1)}
        )
    if kind == 3:
        own = PurposeRecord(
            purpose="sale",
            status="denied",
            source="csv",
            updated_at=NOW - timedelta(days=i),
            sequence=0,
            policy_version=None,
            expires_at=None,
            actor=Actor("operator", "imp"),
        )
        return PendingEntry("consent.changed", (sale,), carried=(own,), detail={"import": i})
    return PendingEntry("consent.changed", (sale,), profile={"gpc_opted_out_at": NOW})


async def _set_up(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Every subject exists; the OLD ones and the person have one entry; the alias is
    merged into the person."""
    async with unit_of_work(sessions) as uow:
        await uow.imports.create_subjects(CHUNK)
        snaps = await uow.subjects.locked_snapshots([*OLD, PERSON])
        for i, sid in enumerate([*OLD, PERSON]):
            await record(uow, snaps[sid], entry(i + 1, snaps[sid]), ctx(i))
        await uow.aliases.add_link(AliasLink(ALIAS, PERSON, NOW, 1, 0))


async def _chunk(uow: UnitOfWork) -> list[Item]:
    """Each subject's entry; the person withdraws the grant it gave in ``_set_up``."""
    snaps = await uow.subjects.locked_snapshots(CHUNK)
    items = [(snaps[s], entry(i, snaps[s]), ctx(100 + i)) for i, s in enumerate(CHUNK)]
    withdraw = Change("marketing_email", "granted", "denied")
    items[CHUNK.index(PERSON)] = (
        snaps[PERSON],
        PendingEntry("consent.changed", (withdraw,)),
        ctx(7),
    )
    return items


async def _rows(session: AsyncSession) -> dict[str, list[Any]]:
    """What the chunk left in every table it writes (times the database sets left out)."""
    queries = {
        "ledger": "SELECT subject_id, sequence, type, changes, detail, policy_version, "
        "jurisdiction, channel, actor_type, actor_id, occurred_at, evidence_hash, prev_hash, "
        "hash, leaf_index FROM consent_ledger ORDER BY subject_id, sequence",
        "evidence": "SELECT subject_id, sequence, evidence FROM consent_evidence "
        "ORDER BY subject_id, sequence",
        "state": "SELECT * FROM consent_state ORDER BY subject_id, purpose",
        "subjects": "SELECT subject_id, sequence, jurisdiction, birth_date, gpc_opted_out_at, "
        "erased_at, last_hash, decisions, age_status, age_check_at FROM subjects "
        "WHERE subject_id LIKE 'd-%' ORDER BY subject_id",
    }
    return {
        name: [tuple(r) for r in (await session.execute(text(sql))).all()]
        for name, sql in queries.items()
    }


Writer = Callable[[UnitOfWork, list[Item]], Awaitable[list[SubjectSnapshot]]]


async def _write(
    sessions: async_sessionmaker[AsyncSession], writer: Writer
) -> tuple[dict[str, list[Any]], list[DomainEvent], list[SubjectSnapshot]]:
    """The chunk written by ``writer``, seen from inside its transaction, then rolled back."""
    async with sessions() as session:
        uow = UnitOfWork(session)
        afters = await writer(uow, await _chunk(uow))
        rows, events = await _rows(session), list(uow.events)
        await uow.rollback()
    return rows, events, afters


async def _one_by_one(uow: UnitOfWork, items: list[Item]) -> list[SubjectSnapshot]:
    return [(await record(uow, *item))[0] for item in items]


async def _batched(uow: UnitOfWork, items: list[Item]) -> list[SubjectSnapshot]:
    policies = await load_policies(uow)
    return [r.after for r in await record_many(uow, items, policies=policies)]


async def test_a_batched_chunk_writes_exactly_what_one_by_one_writes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _set_up(sessions)
    single_rows, single_events, single_after = await _write(sessions, _one_by_one)
    batch_rows, batch_events, batch_after = await _write(sessions, _batched)
    assert len(single_rows["ledger"]) == len(CHUNK) + len(OLD) + 1
    for table in single_rows:
        assert batch_rows[table] == single_rows[table], table
    assert len(single_events) == len(CHUNK)
    assert batch_events == single_events
    assert batch_after == single_after
    # the alias's event answers with its person's records as changed in this chunk
    person = next(e for e in batch_events if e.subject_id == PERSON)
    alias = next(e for e in batch_events if e.subject_id == ALIAS)
    assert alias.data["decisions"]["marketing_email"] is False
    assert person.data["decisions"]["marketing_email"] is False


async def test_one_entry_per_subject_in_a_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _set_up(sessions)
    async with sessions() as session:
        uow = UnitOfWork(session)
        items = await _chunk(uow)
        with pytest.raises(ValueError, match="one entry per subject"):
            await record_many(uow, [items[0], items[0]], policies=await load_policies(uow))
        await uow.rollback()


async def test_the_change_feed_hears_every_subject_of_a_batch(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await _set_up(sessions)
    heard: list[str] = []
    await db.add_listener("consent_changes", lambda *args: heard.append(args[3]))
    async with unit_of_work(sessions) as uow:
        await _batched(uow, await _chunk(uow))
    await asyncio.sleep(0.5)
    subjects = {p.split("|")[3]: int(p.split("|")[1]) for p in heard if p.startswith("s|")}
    expected = {s: (2 if s in OLD or s == PERSON else 1) for s in CHUNK}
    assert {s: subjects.get(s) for s in CHUNK} == expected
