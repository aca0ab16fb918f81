"""Guardians of minors: link with verification, revoke, and lapse what they authorised."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from consent.adapters.tables import GuardianLink
from consent.domain.entries import PendingEntry
from consent.domain.model import Change, DomainError, SubjectSnapshot
from consent.service.context import WriteContext
from consent.service.decisions import age_status_of
from consent.service.preferences import refuse_personal_write
from consent.service.recorder import record
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339


async def link(
    uow: UnitOfWork,
    subject_id: str,
    guardian_id: str,
    *,
    method: str,
    reference: str,
    verified_at: datetime,
    ctx: WriteContext,
) -> GuardianLink:
    if guardian_id == subject_id:
        raise DomainError("guardian_is_subject", "a subject cannot be their own guardian")
    snapshot = await uow.subjects.snapshot(subject_id, for_update=True)
    if snapshot.erased_at is not None:
        raise DomainError("subject_erased", "this subject has been erased")
    refuse_personal_write(snapshot)
    if age_status_of(snapshot, ctx.now) not in ("child", "teen_opt_in"):
        raise DomainError(
            "subject_not_minor",
            "a guardian can only be linked to a minor: record the subject's birth date first",
        )
    if guardian_id in snapshot.guardian_ids:
        raise DomainError("guardian_already_linked", "this guardian is already linked")
    row = GuardianLink(
        id=uuid.uuid4(),
        subject_id=subject_id,
        guardian_id=guardian_id,
        method=method,
        reference=reference,
        verified_at=verified_at,
        linked_at=ctx.now,
    )
    await uow.guardians.add(row)
    snapshot.guardian_ids = snapshot.guardian_ids | {guardian_id}
    verification = {
        "method": method,
        "reference": reference,
        "verified_at": verified_at.isoformat(),
    }
    ctx = replace(ctx, evidence={**ctx.evidence, "verification": verification})
    entry = PendingEntry(
        "subject.guardian_linked",
        detail={"guardian_id": guardian_id, "verification_method": method},
        event_extra={
            "guardian_id": guardian_id,
            "verification_method": method,
            "verified_at": rfc3339(verified_at),
        },
    )
    await record(uow, snapshot, entry, ctx)
    return row


async def lapse_grants(
    uow: UnitOfWork,
    snapshot: SubjectSnapshot,
    guardian_id: str | None,
    ctx: WriteContext,
    reason: str,
    extra: Mapping[str, str] | None = None,
) -> SubjectSnapshot:
    """Grants given by ``guardian_id`` (any guardian when None) become unset, ``lapsed``."""
    lapsing = sorted(
        (
            r
            for r in snapshot.records.values()
            if r.status == "granted"
            and r.actor.type == "guardian"
            and (guardian_id is None or r.actor.id == guardian_id)
        ),
        key=lambda r: r.purpose,
    )
    if not lapsing:
        return snapshot
    changes = [Change(r.purpose, "granted", "unset") for r in lapsing]
    lapse_ctx = WriteContext(channel="system", actor=ctx.actor, now=ctx.now)
    entry = PendingEntry(
        "consent.lapsed",
        tuple(changes),
        detail={"reason": reason, "guardian_id": guardian_id},
        event_extra={"reason": reason, **(extra or {})},
    )
    after, _ = await record(uow, snapshot, entry, lapse_ctx)
    return after


async def revoke(uow: UnitOfWork, subject_id: str, guardian_id: str, ctx: WriteContext) -> None:
    snapshot = await uow.subjects.snapshot(subject_id, for_update=True)
    if snapshot.erased_at is not None:
        raise DomainError("subject_erased", "this subject has been erased")
    if not await uow.guardians.revoke(subject_id, guardian_id, ctx.now):
        raise LookupError("no active link to that guardian")
    snapshot.guardian_ids = snapshot.guardian_ids - {guardian_id}
    entry = PendingEntry(
        "subject.guardian_revoked",
        detail={"guardian_id": guardian_id},
        event_extra={"guardian_id": guardian_id},
    )
    snapshot, _ = await record(uow, snapshot, entry, ctx)
    await lapse_grants(uow, snapshot, guardian_id, ctx, "guardian_revoked")
