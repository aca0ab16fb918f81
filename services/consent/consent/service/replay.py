"""Replays from the ledger: re-emit subjects' current decisions, marked ``replay: true``.

A job selects subjects with a ledger change recorded in ``[since, until)``, walks them in
subject-id order, and records its cursor in the same transaction as what it emits, so an
interrupted job resumes where it stopped and emits nothing twice. Event ids are stable per
(subject, sequence, job). With ``processors`` the job publishes, through the outbox, on the
private topic ``consent.replays.v1`` with the processors named (header
``consent_processors``), which only the propagator reads, and never touches the shared
topic; without, it publishes to ``consent.events.v1`` (and so to every processor).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.operations import JobConflict, ReplayJobView
from consent.domain.events import DomainEvent, consent_event, event_id
from consent.domain.model import Actor
from consent.service.decisions import decisions_for
from consent.service.processors import KnownProcessor
from consent.service.recorder import as_answered, load_policies
from consent.service.unit_of_work import UnitOfWork, unit_of_work


class ReplayError(ValueError):
    """Bad replay parameters (unknown processor or purpose, empty window)."""


class ReplayConflict(Exception):
    """Another replay is running for the same scope."""


@dataclass
class ReplayRequest:
    since: datetime
    until: datetime
    actor: str
    subject_id: str | None = None
    purposes: list[str] = field(default_factory=list)
    processors: list[str] = field(default_factory=list)
    dry_run: bool = False
    rate: float | None = None

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "subject_id": self.subject_id,
            "purposes": sorted(self.purposes),
            "processors": sorted(self.processors),
            "rate": self.rate,
        }

    def scope_key(self) -> str:
        return "processors:" + ",".join(sorted(self.processors)) if self.processors else "topic"


def validate(req: ReplayRequest, known: dict[str, KnownProcessor]) -> None:
    if req.since.tzinfo is None or req.until.tzinfo is None:
        raise ReplayError("times must carry a time zone (e.g. 2026-11-01T00:00:00Z)")
    if req.until <= req.since:
        raise ReplayError("--until must be after --since")
    unknown = sorted(set(req.processors) - set(known))
    if unknown:
        raise ReplayError(
            f"unknown processor(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known)) or 'none configured'}"
        )


async def create_job(
    uow: UnitOfWork, req: ReplayRequest, known: dict[str, KnownProcessor]
) -> ReplayJobView:
    validate(req, known)
    ops = uow.operations
    try:
        job = await ops.start_job(
            scope_key=req.scope_key(),
            params=req.params(),
            created_by=req.actor,
            total=await ops.count_replay_subjects(req.params()),
            dry_run=req.dry_run,
        )
    except JobConflict as exc:
        raise ReplayConflict(f"a replay is already running for scope {req.scope_key()}") from exc
    await ops.audit(
        req.actor,
        "replay.started",
        req.params() | {"dry_run": req.dry_run},
        {"subjects": job.total},
        reference=str(job.id),
    )
    return job


@dataclass
class BatchResult:
    subjects: int
    emitted: int
    finished: bool
    samples: list[dict[str, Any]]


async def run_batch(
    sessions: async_sessionmaker[AsyncSession],
    job_id: uuid.UUID,
    known: dict[str, KnownProcessor],
    batch: int = 100,
) -> BatchResult | None:
    """Advance a job by one batch; None when another runner holds it."""
    async with unit_of_work(sessions) as uow:
        ops = uow.operations
        job = await ops.job(job_id, for_update=True)
        if job is None or job.status not in ("running", "pending"):
            return None
        if job.params.get("kind") == "repair":  # drift repair (service/drift_repair.py)
            from consent.service.drift_repair import repair_batch

            done, sent, finished = await repair_batch(uow, job, known, batch)
            return BatchResult(done, sent, finished, [])
        now = datetime.now(UTC)
        subjects = await ops.replay_subjects(job.params, job.cursor, batch)
        if not subjects:
            await ops.update_job(job.id, status="completed", finished_at=now, heartbeat_at=now)
            await ops.audit(
                job.created_by,
                "replay.completed",
                job.params,
                {"subjects": job.done, "emitted": job.emitted},
                reference=str(job.id),
            )
            return BatchResult(0, 0, True, [])
        # locked until this batch commits: a concurrent change then gets a later outbox
        # position than the replayed state, so an older state never lands after a newer one
        snapshots = await uow.subjects.locked_snapshots(subjects)
        policies = await load_policies(uow)
        targets = [known[n] for n in job.params.get("processors") or []]
        samples: list[dict[str, Any]] = []
        emitted = 0
        for sid in subjects:
            snap = snapshots.get(sid)
            if snap is None or snap.erased_at is not None:
                continue  # an erased subject is never replayed
            snap = await as_answered(uow, snap)  # a merged anonymous id answers for its person
            decisions = decisions_for(snap, policies, now)
            eid = event_id(sid, snap.sequence, replay_tag=str(job.id))
            event = consent_event(
                "consent.changed",
                subject_id=sid,
                sequence=snap.sequence,
                changes=[],
                decisions=decisions,
                jurisdiction=snap.jurisdiction,
                policy_version=None,
                channel="operator",
                actor=Actor("operator", job.created_by),
                occurred_at=now,
                replay=True,
            )
            if targets:
                # one record on the private replays topic; the propagator builds each named
                # processor's delivery from it
                uow.emit(
                    DomainEvent(
                        event.type,
                        sid,
                        snap.sequence,
                        now,
                        event.data,
                        id=eid,
                        aggregatetype="replay",
                        targets=",".join(cfg.name for cfg in targets),
                    )
                )
                for cfg in targets:
                    emitted += 1
                    if len(samples) < 5:
                        samples.append(_sample(cfg, eid, event.type, event.data))
            else:
                event = DomainEvent(event.type, sid, snap.sequence, now, event.data, id=eid)
                uow.emit(event)
                emitted += 1
                if len(samples) < 5:
                    samples.append({"topic": "consent.events.v1", **event.data})
        if job.dry_run:
            uow.events.clear()  # nothing reaches the outbox
        await ops.update_job(
            job.id,
            cursor=subjects[-1],
            done=job.done + len(subjects),
            emitted=job.emitted + emitted,
            heartbeat_at=now,
            status="running",
        )
        return BatchResult(len(subjects), emitted, False, samples)


def _sample(cfg: KnownProcessor, eid: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the processor will be sent (as the propagator shapes it: its purposes only)."""
    return {
        "processor": cfg.name,
        "event_id": eid,
        "type": event_type,
        "subject_id": data["subject_id"],
        "sequence": data.get("sequence"),
        "decisions": {p: v for p, v in data.get("decisions", {}).items() if p in cfg.purposes},
        "occurred_at": data.get("occurred_at"),
        "replay": True,
    }


async def interrupt(sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID) -> None:
    async with unit_of_work(sessions) as uow:
        await uow.operations.update_job(job_id, status="interrupted")


async def resume(sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID) -> ReplayJobView:
    scope = "?"
    try:
        async with unit_of_work(sessions) as uow:
            ops = uow.operations
            job = await ops.job(job_id)
            if job is None:
                raise ReplayError(f"no replay job {job_id}")
            if job.status == "completed":
                raise ReplayError(f"replay job {job_id} has already completed")
            scope = job.scope_key
            await ops.restart_job(job_id, datetime.now(UTC))
    except JobConflict as exc:  # the unique running job per scope
        raise ReplayConflict(f"another replay is running for scope {scope}") from exc
    return replace(job, status="running")
