"""Drift repair: send the current decisions to the processors that drifted.

A repair is a replay job (``replay_jobs``, ``kind: repair``; resumable, one at a time, and
its progress at ``GET /v1/admin/replays/{job_id}``) that walks subjects in id order and,
for each subject a processor holds a wrong answer for, publishes one record on the private
topic ``consent.replays.v1`` naming the drifted processors: ``consent.changed`` with the
current decisions, or, for an erased subject, its ``subject.erasure_requested`` again; both
marked ``replay: true, repair: true``. The event id is new per job (a fresh ``webhook-id``)
and processors apply a repair even at an equal sequence. Every batch that repairs something
is audited, and the job's start and end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consent.adapters.operations import JobConflict, ReplayJobView
from consent.domain.events import DomainEvent, consent_event, event_id
from consent.domain.model import Actor, SubjectSnapshot
from consent.service.decisions import decisions_for
from consent.service.drift import compare
from consent.service.processors import KnownProcessor
from consent.service.recorder import as_answered, load_policies
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339

KIND = "repair"
SCOPE = "drift-repair"


async def create_repair_job(
    uow: UnitOfWork,
    actor: str,
    known: dict[str, KnownProcessor],
    processor: str | None = None,
    subject_id: str | None = None,
) -> ReplayJobView:
    from consent.service.replay import ReplayConflict, ReplayError

    if processor is not None and processor not in known:
        raise ReplayError(
            f"unknown processor {processor!r}; known: {', '.join(sorted(known)) or 'none'}"
        )
    params = {"kind": KIND, "processor": processor, "subject_id": subject_id}
    total = await uow.drift.count_subjects(subject_id)
    ops = uow.operations
    try:
        job = await ops.start_job(
            scope_key=SCOPE, params=params, created_by=actor, total=int(total)
        )
    except JobConflict as exc:
        raise ReplayConflict("a drift repair is already running") from exc
    await ops.audit(actor, "drift.repair.started", params, {"subjects": job.total}, str(job.id))
    return job


async def repair_batch(
    uow: UnitOfWork, job: ReplayJobView, known: dict[str, KnownProcessor], batch: int
) -> tuple[int, int, bool]:
    """One batch of a repair job (the caller's unit of work holds the job's row). Returns
    (subjects looked at, repairs sent, finished)."""
    ops = uow.operations
    params: dict[str, Any] = job.params
    now = datetime.now(UTC)
    ids = await uow.drift.subjects(job.cursor, params.get("subject_id"), batch)
    if not ids:
        await ops.update_job(job.id, status="completed", finished_at=now, heartbeat_at=now)
        await ops.audit(
            job.created_by,
            "drift.repair.completed",
            params,
            {"subjects": job.done, "repaired": job.emitted},
            reference=str(job.id),
        )
        return 0, 0, True
    processors = (
        known
        if not params.get("processor")
        else {p: known[p] for p in [params["processor"]] if p in known}
    )
    # locked until this batch commits, as a replay does: a concurrent change gets a later
    # outbox position than the repair, so the repair never lands after a newer state
    snapshots = await uow.subjects.locked_snapshots(ids)
    found = await compare(uow, ids, processors, now, snapshots=snapshots)
    drifted: dict[str, set[str]] = {}
    for d in found.differences:
        drifted.setdefault(d.subject_id, set()).add(d.processor)
    policies = await load_policies(uow)
    sent = 0
    for sid, names in sorted(drifted.items()):
        event = await _repair_event(uow, snapshots[sid], policies, now, job)
        uow.emit(
            DomainEvent(
                event.type,
                sid,
                event.sequence,
                now,
                event.data,
                id=event_id(sid, event.sequence or 0, replay_tag=f"repair:{job.id}"),
                aggregatetype="replay",
                targets=",".join(sorted(names)),
            )
        )
        sent += len(names)
    await uow.flush_events()
    if drifted:
        await ops.audit(
            job.created_by,
            "drift.repaired",
            {"job_id": str(job.id), "subjects": sorted(drifted)},
            {"subjects": len(drifted), "repairs": sent},
            reference=str(job.id),
        )
    await ops.update_job(
        job.id,
        cursor=ids[-1],
        done=job.done + len(ids),
        emitted=job.emitted + sent,
        heartbeat_at=now,
        status="running",
    )
    return len(ids), sent, False


async def _repair_event(
    uow: UnitOfWork, snap: SubjectSnapshot, policies: Any, now: datetime, job: ReplayJobView
) -> DomainEvent:
    if snap.erased_at is not None:
        request = await uow.erasures.latest(snap.subject_id)
        if request is not None:
            return DomainEvent(
                "subject.erasure_requested",
                snap.subject_id,
                snap.sequence,
                now,
                {
                    "subject_id": snap.subject_id,
                    "sequence": snap.sequence,
                    "request_id": str(request.request_id),
                    "due_at": rfc3339(request.due_at),
                    "reason": request.reason,
                    "occurred_at": rfc3339(now),
                    "replay": True,
                    "repair": True,
                },
            )
    answered = await as_answered(uow, snap)
    return consent_event(
        "consent.changed",
        subject_id=snap.subject_id,
        sequence=snap.sequence,
        changes=[],
        decisions=decisions_for(answered, policies, now),
        jurisdiction=snap.jurisdiction,
        policy_version=None,
        channel="operator",
        actor=Actor("operator", job.created_by),
        occurred_at=now,
        replay=True,
        extra={"repair": True},
    )
