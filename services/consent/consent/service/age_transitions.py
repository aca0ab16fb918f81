"""Birthdays that change an age status are recorded when they happen, not only derived at
read time: the scheduler gives the subject its next sequence, one ledger entry and one event,
so processors hear the new decisions.

- a child who is no longer a child: the guardian's grants lapse (``consent.lapsed``, reason
  ``came_of_age``, with ``from``/``to`` age statuses): one event for the whole transition;
- any other transition (child → teen, teen → adult, or a child without guardian grants):
  ``subject.age_status_changed`` with ``from``/``to``. The birth date is never carried.

Each subject's row says when its status may next change (``age_check_at``, set with every
event), so a round reads only the subjects whose birthday has come. Exactly once with any
number of schedulers: the subject's row lock (SKIP LOCKED) and a re-read under it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.domain.entries import PendingEntry
from consent.domain.model import Actor
from consent.service.context import WriteContext
from consent.service.decisions import age_status_of, next_age_change
from consent.service.guardians import lapse_grants
from consent.service.per_subject import each_subject
from consent.service.recorder import record
from consent.service.unit_of_work import UnitOfWork

SCHEDULER = Actor("system", "coming-of-age-scheduler")
PAGE = 500


async def record_age_transition(uow: UnitOfWork, subject_id: str, now: datetime) -> bool:
    """True when an event was recorded. Bookkeeping alone (status unchanged) is kept too:
    the caller's unit of work commits whatever the step wrote."""
    if not await uow.subjects.try_lock(subject_id):
        return False
    snapshot = await uow.subjects.snapshot(subject_id)
    if snapshot.erased_at is not None:
        return False
    was, now_status = snapshot.recorded_age_status, age_status_of(snapshot, now)
    ctx = WriteContext(channel="system", actor=SCHEDULER, now=now)
    transition = {"from": was, "to": now_status} if was else {}
    if now_status != "child":
        after = await lapse_grants(uow, snapshot, None, ctx, "came_of_age", transition)
        if after is not snapshot:
            return True
    if was is None or was == now_status:
        # unchanged (or tracked only from now on: subjects written before tracking began)
        await uow.due.track_age(subject_id, now_status, next_age_change(snapshot, now))
        return False
    entry = PendingEntry(
        "subject.age_status_changed",
        detail={"reason": "age threshold crossed", **transition},
        event_extra=transition,
    )
    await record(uow, snapshot, entry, ctx)
    return True


async def record_age_transitions(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Scheduler job: every age status change due at ``now``; return how many were recorded."""
    done, after = 0, ""
    while True:
        async with sessions() as session:
            page = await UnitOfWork(session).due.age_checks_due(now, after, PAGE)
        if not page:
            return done
        done += await each_subject(
            sessions, page, lambda uow, sid: record_age_transition(uow, sid, now)
        )
        after = page[-1]
