"""Bulk import use cases: read a file into rows, then record each subject's rows as one
accepted change (one sequence, one ledger entry, one event), in chunks of subjects, each
chunk one transaction that also advances the job, so an interrupted import resumes exactly
where it stopped and a re-run imports nothing twice (rows' idempotency keys).

The rules are in ``domain/imports.py``; other tools' export shapes in
``domain/import_mappings.py``."""

from __future__ import annotations

import hashlib
import uuid
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.imports import ImportJob, ImportRepository
from consent.catalog import load_catalog
from consent.domain import imports as rules
from consent.domain.entries import PendingEntry
from consent.domain.import_mappings import MAPPERS, MappingError
from consent.domain.model import Actor, Policy, SubjectSnapshot
from consent.service.context import WriteContext, utcnow
from consent.service.decisions import age_status_of
from consent.service.recorder import load_policies, record_many
from consent.service.unit_of_work import UnitOfWork, unit_of_work

CHUNK = 200  # subjects per transaction
FORMATS = ("jsonl", "csv")
Progress = Callable[[int, int, dict[str, int]], None]  # subjects done, total, counts


class ImportRefused(ValueError):
    """A file or option we cannot import at all (HTTP 422, CLI error)."""


@dataclass
class Source:
    """A file read into valid rows by subject, and the rows it rejected (line, column)."""

    by_subject: dict[str, list[rules.ImportRow]] = field(default_factory=dict)
    rejected: list[rules.RowError] = field(default_factory=list)
    rows: int = 0
    duplicates: int = 0  # the same idempotency key twice in the file


def read_source(
    data: bytes,
    fmt: str,
    *,
    mapping: str | None,
    purpose_map: Mapping[str, str],
    policy_versions: set[str],
    now: datetime,
) -> Source:
    if fmt not in FORMATS:
        raise ImportRefused(f"format must be one of {', '.join(FORMATS)}")
    if mapping is not None and mapping not in MAPPERS:
        raise ImportRefused(f"mapping must be one of {', '.join(sorted(MAPPERS))}")
    purposes = set(load_catalog())
    source = Source()
    keys: set[str] = set()
    for line, raw in rules.read_rows(data, fmt):
        if isinstance(raw, rules.RowError):
            source.rows += 1
            source.rejected.append(raw)
            continue
        try:
            rows = MAPPERS[mapping](raw, purpose_map) if mapping else [raw]
        except MappingError as exc:
            source.rows += 1
            source.rejected.append(rules.RowError(line, exc.column, exc.reason))
            continue
        for r in rows:
            source.rows += 1
            row = rules.validate(
                line, r, purposes=purposes, policy_versions=policy_versions, now=now
            )
            if isinstance(row, rules.RowError):
                source.rejected.append(row)
            elif row.idempotency_key in keys:
                source.duplicates += 1
            else:
                keys.add(row.idempotency_key)
                source.by_subject.setdefault(row.subject_id, []).append(row)
    return source


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def start(
    sessions: async_sessionmaker[AsyncSession],
    data: bytes,
    fmt: str,
    *,
    actor: str,
    mapping: str | None = None,
    purpose_map: Mapping[str, str] | None = None,
    keep_payload: bool = True,
) -> tuple[uuid.UUID, Source]:
    """Read and check the whole file, then create its job (with the rows rejected so far).
    ``keep_payload``: store the upload so any replica can resume it (API uploads)."""
    purpose_map = dict(purpose_map or {})
    async with unit_of_work(sessions) as uow:
        versions = {p.version for p in await load_policies(uow)}
        source = read_source(
            data, fmt, mapping=mapping, purpose_map=purpose_map, policy_versions=versions,
            now=utcnow(),
        )  # fmt: skip
        job_id = uuid.uuid4()
        await uow.imports.create(
            job_id,
            fmt=fmt,
            mapping=mapping,
            purpose_map=purpose_map,
            sha256=sha256(data),
            payload=data if keep_payload else None,
            actor=actor,
            counts={
                "rows": source.rows,
                "subjects": len(source.by_subject),
                "rejected": len(source.rejected),
                "duplicates": source.duplicates,
            },
            rejected=[r.as_dict() for r in sorted(source.rejected, key=lambda r: r.line)],
        )
    return job_id, source


async def run(
    sessions: async_sessionmaker[AsyncSession],
    job_id: uuid.UUID,
    data: bytes | None = None,
    *,
    chunk: int = CHUNK,
    on_progress: Progress | None = None,
) -> ImportJob | None:
    """Drive a job to its end (or until another runner holds it: then None). ``data``: the
    file again for a CLI job (checked against the job's hash); uploads carry their own."""
    async with sessions() as session:
        job = await ImportRepository(session).get(job_id)
    if job is None:
        raise ImportRefused(f"no import job {job_id}")
    data = data if data is not None else job.payload
    if data is None:
        raise ImportRefused("this job was started from a file: give the same file to resume")
    if sha256(data) != job.source_sha256:
        raise ImportRefused("this is not the file the job was started with")
    async with sessions() as session:
        versions = {p.version for p in await load_policies(UnitOfWork(session))}
    source = read_source(
        data, job.format, mapping=job.mapping, purpose_map=job.purpose_map,
        policy_versions=versions, now=job.created_at,
    )  # fmt: skip
    subjects = sorted(source.by_subject)
    while True:
        async with unit_of_work(sessions) as uow:
            repo = uow.imports
            locked = await repo.get(job_id, lock=True)
            if locked is None or locked.status != "running":
                return locked
            todo = [s for s in subjects if locked.cursor is None or s > locked.cursor][:chunk]
            counts, rejected = dict(locked.counts), list(locked.rejected)
            policies = await load_policies(uow)
            outcome = await import_chunk(
                uow, {s: source.by_subject[s] for s in todo}, job_id, locked.created_by,
                policies,
            )  # fmt: skip
            for k, v in outcome.counts.items():
                counts[k] = counts.get(k, 0) + v
            rejected += [r.as_dict() for r in outcome.rejected]
            counts["rejected"] = counts.get("rejected", 0) + len(outcome.rejected)
            finished = len(todo) < chunk or todo[-1] == subjects[-1]
            cursor = todo[-1] if todo else locked.cursor
            await repo.save(
                job_id, cursor=cursor, counts=counts, rejected=rejected, finished=finished
            )
        if on_progress is not None:
            done = bisect_right(subjects, cursor) if cursor is not None else 0
            on_progress(done, len(subjects), counts)
        if finished:
            async with sessions() as session:
                return await ImportRepository(session).get(job_id)


@dataclass
class ChunkOutcome:
    counts: dict[str, int]
    rejected: list[rules.RowError]


async def import_chunk(
    uow: UnitOfWork,
    rows_by_subject: Mapping[str, list[rules.ImportRow]],
    job_id: uuid.UUID,
    actor_id: str,
    policies: list[Policy],
) -> ChunkOutcome:
    """Several subjects' rows, each subject's as one accepted change (``plan_subject``), in
    the caller's transaction. Every statement is one for the chunk: keys seen, locks,
    snapshots, the changes (``record_many``), keys remembered; the events are one outbox
    insert at commit."""
    repo = uow.imports
    seen = await repo.seen([r.idempotency_key for rows in rows_by_subject.values() for r in rows])
    fresh = {
        s: [r for r in rows if r.idempotency_key not in seen] for s, rows in rows_by_subject.items()
    }
    fresh = {s: rows for s, rows in fresh.items() if rows}
    counts = {"already_imported": len(seen), "applied": 0, "skipped": 0, "subjects_changed": 0}
    rejected: list[rules.RowError] = []
    if not fresh:
        return ChunkOutcome(counts, rejected)
    await repo.create_subjects(sorted(fresh))
    snapshots = await uow.subjects.locked_snapshots(sorted(fresh))
    now = utcnow()
    actor = Actor("operator", actor_id)
    validity = {k: p.validity_days for k, p in load_catalog().items()}
    plans: dict[str, rules.SubjectPlan] = {}
    items: list[tuple[SubjectSnapshot, PendingEntry, WriteContext]] = []
    for subject_id, rows in fresh.items():
        snapshot = snapshots[subject_id]
        plan = rules.plan_subject(
            snapshot,
            rows,
            now=now,
            policies=policies,
            age_status=age_status_of(snapshot, now),
            validity_days=validity,
            sequence=snapshot.sequence + 1,
            actor=actor,
        )
        plans[subject_id] = plan
        if plan.records:
            entry, ctx = _plan_entry(plan, job_id, actor, now)
            items.append((snapshot, entry, ctx))
        counts["applied"] += len(plan.applied)
        counts["skipped"] += len(plan.skipped)
        counts["subjects_changed"] += 1 if plan.records else 0
        rejected += plan.rejected
    recorded = await record_many(uow, items, policies=policies)
    sequences = {r.after.subject_id: r.after.sequence for r in recorded}
    settled: list[tuple[str, str, int | None]] = []
    for subject_id, plan in plans.items():
        sequence = sequences.get(subject_id)
        settled += [(r.idempotency_key, subject_id, sequence) for r in plan.applied]
        settled += [(r.idempotency_key, subject_id, None) for r, _ in plan.skipped]
    await repo.remember(job_id, settled)
    return ChunkOutcome(counts, rejected)


def _plan_entry(
    plan: rules.SubjectPlan, job_id: uuid.UUID, actor: Actor, now: datetime
) -> tuple[PendingEntry, WriteContext]:
    """The plan (which has records) as one ledger entry and the context it is written in."""
    newest = max(plan.applied, key=lambda r: r.occurred_at)
    ctx = WriteContext(
        channel="import",
        actor=actor,
        now=now,
        policy_version=newest.policy_version,
        evidence={"import": {"job_id": str(job_id), "rows": [r.evidence() for r in plan.applied]}},
    )
    entry = PendingEntry(
        "consent.changed",
        tuple(plan.changes),
        detail={"import": {"job_id": str(job_id), "rows": len(plan.applied)}},
        carried=tuple(plan.records),  # each row keeps its own time, channel and notice
        profile={"jurisdiction": plan.jurisdiction} if plan.jurisdiction else {},
    )
    return entry, ctx


async def resume_abandoned_imports(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """An uploaded import whose runner died (no heartbeat for a minute) is finished here."""
    async with sessions() as session:
        stale = await ImportRepository(session).stale(now - timedelta(minutes=1))
    for job_id in stale:
        await run(sessions, job_id)
    return len(stale)


def job_view(job: ImportJob) -> dict[str, Any]:
    from consent_common.timefmt import rfc3339

    return {
        "job_id": str(job.id),
        "status": job.status,
        "format": job.format,
        "mapping": job.mapping,
        "counts": job.counts,
        "rejected": job.rejected[:1000],
        "created_by": job.created_by,
        "created_at": rfc3339(job.created_at),
        "finished_at": rfc3339(job.finished_at),
        "error": job.error,
    }
