"""Merge an anonymous subject into a person, and undo it (rules: ``domain/merge.py``).

Both subjects take a sequence: the anonymous id's ``subject.merged`` entry first (it names
the person and the person's chain head before the merge), then the person's (it names the
anonymous id and the hash of that entry), so each ledger binds the other. Locks: the
anonymous id's row, then the person's, always in that order (erasure does the same).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from consent.adapters.tables import GuardianLink, SubjectAlias
from consent.domain.entries import PendingEntry, record_from_dict, record_to_dict
from consent.domain.hashing import GENESIS
from consent.domain.merge import apply_merge, device_view, plan_merge, plan_unmerge
from consent.domain.model import Change, DomainError, PurposeRecord, SubjectSnapshot
from consent.service.context import WriteContext
from consent.service.decisions import age_status_of, device_purposes
from consent.service.recorder import load_policies, record
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339


@dataclass(frozen=True)
class LinkResult:
    subject_id: str
    anonymous_id: str
    linked_at: str
    sequence: int  # the person's sequence after the merge
    anonymous_sequence: int
    changes: list[dict[str, str]]
    created: bool


def _result(link: SubjectAlias, changes: list[Change], created: bool) -> LinkResult:
    return LinkResult(
        subject_id=link.subject_id,
        anonymous_id=link.alias_id,
        linked_at=rfc3339(link.linked_at),
        sequence=link.person_sequence,
        anonymous_sequence=link.alias_sequence,
        changes=[c.as_dict() for c in changes],
        created=created,
    )


async def _lock_pair(
    uow: UnitOfWork, person_id: str, anonymous_id: str
) -> tuple[SubjectSnapshot, SubjectSnapshot]:
    if person_id == anonymous_id:
        raise DomainError("alias_is_subject", "a subject cannot be merged into itself")
    device = await uow.subjects.snapshot(anonymous_id, for_update=True)
    person = await uow.subjects.snapshot(person_id, for_update=True)
    return person, device


def _event(
    role: str, person_id: str, anonymous_id: str, other_seq: int, other_hash: str
) -> dict[str, Any]:
    return {
        "role": role,
        "person_id": person_id,
        "anonymous_id": anonymous_id,
        "other_sequence": other_seq,
        "other_hash": other_hash,
    }


async def link(uow: UnitOfWork, person_id: str, anonymous_id: str, ctx: WriteContext) -> LinkResult:
    person, device = await _lock_pair(uow, person_id, anonymous_id)
    if device.merged_into == person_id:
        existing = await uow.aliases.active(anonymous_id)
        assert existing is not None
        return _result(existing, [], created=False)  # linked twice: nothing new
    if device.merged_into is not None:
        raise DomainError("already_merged", "this anonymous id is merged into another subject")
    if person.merged_into is not None:
        raise DomainError(
            "subject_is_alias",
            "the target is itself merged into a person: merge into that person instead",
        )
    if await uow.aliases.aliases_of(anonymous_id):
        raise DomainError("alias_has_aliases", "the anonymous id has anonymous ids merged into it")
    policies = await load_policies(uow)
    plan = plan_merge(
        person,
        device,
        device_purposes=device_purposes(),
        person_age=age_status_of(person, ctx.now),
        device_age=age_status_of(device, ctx.now),
        now=ctx.now,
        policies=policies,
    )
    person_seq = person.sequence + 1
    merged_person = apply_merge(person, plan)
    # the anonymous id's entry: from now on it answers for the person
    said = _event("anonymous", person_id, anonymous_id, person_seq, person.last_hash or GENESIS)
    device_after, _ = await record(
        uow,
        device,
        PendingEntry("subject.merged", detail=said, event_extra=said),
        ctx,
        policies=policies,
        decide_as=device_view(device, merged_person, device_purposes()),
    )
    device_hash = device_after.last_hash or GENESIS
    for guardian in await uow.guardians.active(anonymous_id):
        if guardian.guardian_id in plan.guardians:
            await uow.guardians.add(
                replace_link(guardian, person_id, ctx.now),
            )
    person.guardian_ids = person.guardian_ids | plan.guardians
    said = _event("person", person_id, anonymous_id, device_after.sequence, device_hash)
    detail = {**said, "guardians": sorted(plan.guardians)} if plan.guardians else said
    entry = PendingEntry(
        "subject.merged",
        tuple(plan.changes),
        detail=detail,
        carried=tuple(plan.carried),  # each keeps its own time, source and actor
        profile={"gpc_opted_out_at": plan.gpc_opted_out_at} if plan.gpc_opted_out_at else {},
        event_extra=said,
    )
    await record(uow, person, entry, ctx, policies=policies)
    row = SubjectAlias(
        id=uuid.uuid4(),
        alias_id=anonymous_id,
        subject_id=person_id,
        linked_at=ctx.now,
        person_sequence=person_seq,
        alias_sequence=device_after.sequence,
        replaced={
            k: (record_to_dict(r) if r is not None else None) for k, r in plan.replaced.items()
        },
    )
    await uow.aliases.add(row)
    return _result(row, list(plan.changes), created=True)


def replace_link(link: GuardianLink, subject_id: str, now: Any) -> GuardianLink:
    """A device's verified guardian, linked to the minor person it turned out to be."""
    return GuardianLink(
        id=uuid.uuid4(),
        subject_id=subject_id,
        guardian_id=link.guardian_id,
        method=link.method,
        reference=link.reference,
        verified_at=link.verified_at,
        linked_at=now,
    )


async def unlink(
    uow: UnitOfWork, person_id: str, anonymous_id: str, ctx: WriteContext
) -> LinkResult:
    """Undo: both ledgers record it; the anonymous id answers for itself again (its own
    choices as they stood at the merge, plus its device choices since); the person keeps
    every opt-out, and grants the merge carried in and still standing go back to what the
    person had before. Raise LookupError when no such link stands."""
    person, device = await _lock_pair(uow, person_id, anonymous_id)
    row = await uow.aliases.active(anonymous_id)
    if row is None or row.subject_id != person_id:
        raise LookupError("no such link")
    replaced: dict[str, PurposeRecord | None] = {
        k: (record_from_dict(v) if v is not None else None) for k, v in (row.replaced or {}).items()
    }
    changes, restored = plan_unmerge(person, row.person_sequence, replaced, ctx.now)
    await uow.aliases.end(row, ctx.now)
    person_seq = person.sequence + 1
    device.merged_into = None
    head = person.last_hash or GENESIS
    said = _event("anonymous", person_id, anonymous_id, person_seq, head)
    device_after, _ = await record(
        uow, device, PendingEntry("subject.unmerged", detail=said, event_extra=said), ctx
    )
    device_hash = device_after.last_hash or GENESIS
    said = _event("person", person_id, anonymous_id, device_after.sequence, device_hash)
    entry = PendingEntry(
        "subject.unmerged", tuple(changes), detail=said, carried=tuple(restored), event_extra=said
    )
    await record(uow, person, entry, ctx)
    return LinkResult(
        subject_id=person_id,
        anonymous_id=anonymous_id,
        linked_at=rfc3339(row.linked_at),
        sequence=person_seq,
        anonymous_sequence=device_after.sequence,
        changes=[c.as_dict() for c in changes],
        created=True,
    )
