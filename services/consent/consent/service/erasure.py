"""Erasure: remove personal data, keep the minimal proof, tell every processor."""

from __future__ import annotations

import uuid

from consent.adapters.tables import ErasureRequest
from consent.domain.entries import PendingEntry
from consent.domain.rights import ERASURE_BUSINESS_DAYS, add_business_days
from consent.service.context import WriteContext
from consent.service.preferences import refuse_personal_write
from consent.service.recorder import record
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339

MERGED_PERSON_ERASED = "merged_person_erased"


async def request_erasure(
    uow: UnitOfWork, subject_id: str, ctx: WriteContext, reason: str = "subject_request"
) -> tuple[ErasureRequest, bool]:
    """Record an erasure request; return it and whether it is new (a repeat returns the first).

    The anonymous ids merged into the subject are erased with it, each with its own request
    (reason ``merged_person_erased``); they are locked first, as a merge locks them."""
    aliases = await uow.aliases.aliases_of(subject_id)
    for alias in aliases:
        await uow.subjects.snapshot(alias, for_update=True)
    snapshot = await uow.subjects.snapshot(subject_id, for_update=True)
    if reason != MERGED_PERSON_ERASED:
        refuse_personal_write(snapshot)
    if snapshot.erased_at is not None:
        existing = await uow.erasures.latest(subject_id)
        if existing is not None:
            return existing, False
    request_id = uuid.uuid4()
    due = add_business_days(ctx.now, ERASURE_BUSINESS_DAYS)
    entry = PendingEntry(
        "subject.erasure_requested",
        detail={"request_id": str(request_id), "reason": reason},
        profile={"erased_at": ctx.now, "birth_date": None},
        event_body={
            "request_id": str(request_id),
            "due_at": rfc3339(due),
            "reason": reason,
            "occurred_at": rfc3339(ctx.now),
        },
    )
    _, event = await record(uow, snapshot, entry, ctx)
    await uow.erasures.forget_personal_data(subject_id)
    request = ErasureRequest(
        request_id=request_id,
        subject_id=subject_id,
        reason=reason,
        requested_at=ctx.now,
        due_at=due,
        sequence=event.sequence or 0,
        event_id=event.id,
    )
    await uow.erasures.add(request)
    for alias in await uow.aliases.aliases_of(subject_id):
        await request_erasure(uow, alias, ctx, reason=MERGED_PERSON_ERASED)
    return request, True
