"""Merging an anonymous (device) subject into a known person, and undoing it: pure rules.

The rules, in order (README "Anonymous visitors who sign up"):

1. Device purposes (category ``cookies``) are consent to store or read information on one
   terminal (ePrivacy Art. 5(3)): they never merge. They stay with the device id, and the
   device id keeps answering for them; the person's own cookie choices are untouched.
2. An opt-out on either side survives: an explicit denial, or a GPC signal (for ``sale``
   and ``share``) not overridden by a later explicit grant on the *same* side. It beats a
   grant on the other side however new that grant is.
3. Otherwise the newer explicit grant wins; a grant that no longer speaks for its side
   (expired, lapsed, awaiting re-consent) is not carried. Carried records keep their own
   time, source, actor, policy version and expiry, so re-consent and expiry still apply.
4. Minors: a merge that would put a minor's choices under an older age status (a child's
   under a teen's or an adult's, a teen's under an adult's) is refused
   (``minor_merge_refused``). For a child person, only opt-outs are carried, and grants
   given by one of the child's (possibly carried) guardians; never a sale/share grant.
   A minor device's active guardians are linked to a minor person.
5. The person's profile (jurisdiction, birth date) governs; the device's is never copied.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from consent.domain.model import (
    SALE_SHARE,
    Actor,
    AgeStatus,
    Change,
    DomainError,
    Policy,
    PurposeRecord,
    SubjectSnapshot,
)
from consent.domain.preferences import is_effective

DEVICE_CATEGORY = "cookies"
_AGE_RANK = {"child": 0, "teen_opt_in": 1, "adult": 2, "unknown": 2}
MINOR: frozenset[str] = frozenset({"child", "teen_opt_in"})


@dataclass(frozen=True)
class MergePlan:
    changes: tuple[Change, ...] = ()
    # the records the person holds after the merge for each changed purpose
    carried: tuple[PurposeRecord, ...] = ()
    # the person's records before the merge, for each changed purpose (None: none), for undo
    replaced: Mapping[str, PurposeRecord | None] = field(default_factory=dict)
    gpc_opted_out_at: datetime | None = None  # set on the person when not None
    guardians: frozenset[str] = frozenset()  # device guardians to link to the person


def _opt_out(
    snap: SubjectSnapshot, purpose: str, policies: Iterable[Policy], now: datetime
) -> PurposeRecord | None:
    """The side's opt-out of ``purpose`` as a record (a GPC signal as a ``gpc`` denial)."""
    r = snap.records.get(purpose)
    if r is not None and r.status == "denied":
        return r
    if purpose in SALE_SHARE and snap.gpc_opted_out_at is not None:
        overridden = (
            r is not None
            and r.status == "granted"
            and r.ended_reason is None
            and is_effective(r, policies, now)
            and r.updated_at > snap.gpc_opted_out_at
        )
        if not overridden:
            return PurposeRecord(
                purpose, "denied", "gpc", snap.gpc_opted_out_at, actor=Actor("system")
            )
    return None


def _grant(
    snap: SubjectSnapshot, purpose: str, policies: Iterable[Policy], now: datetime
) -> PurposeRecord | None:
    r = snap.records.get(purpose)
    if r is None or r.status != "granted" or r.ended_reason is not None:
        return None
    return r if is_effective(r, policies, now) else None


def check_ages(person_age: AgeStatus, device_age: AgeStatus) -> None:
    if device_age in MINOR and _AGE_RANK[person_age] > _AGE_RANK[device_age]:
        raise DomainError(
            "minor_merge_refused",
            f"the anonymous subject is a known minor ({device_age}) and the person is not "
            f"({person_age}): record the person's birth date first",
        )


def plan_merge(
    person: SubjectSnapshot,
    device: SubjectSnapshot,
    *,
    device_purposes: frozenset[str],
    person_age: AgeStatus,
    device_age: AgeStatus,
    now: datetime,
    policies: Iterable[Policy] = (),
) -> MergePlan:
    """What merging ``device`` into ``person`` changes on the person; raise DomainError when
    a rule forbids the merge."""
    if person.erased_at is not None or device.erased_at is not None:
        raise DomainError("subject_erased", "one of the two subjects has been erased")
    check_ages(person_age, device_age)
    policies = tuple(policies)
    guardians = (
        frozenset(device.guardian_ids - person.guardian_ids) if person_age in MINOR else frozenset()
    )
    all_guardians = person.guardian_ids | guardians
    purposes = sorted((set(person.records) | set(device.records) | SALE_SHARE) - device_purposes)
    changes: list[Change] = []
    carried: list[PurposeRecord] = []
    replaced: dict[str, PurposeRecord | None] = {}
    for purpose in purposes:
        mine = person.records.get(purpose)
        take: PurposeRecord | None = None
        device_out = _opt_out(device, purpose, policies, now)
        if device_out is not None:
            if _opt_out(person, purpose, policies, now) is None:
                take = device_out
        elif _opt_out(person, purpose, policies, now) is None:
            theirs = _grant(device, purpose, policies, now)
            ours = _grant(person, purpose, policies, now)
            newer = theirs is not None and (ours is None or theirs.updated_at > ours.updated_at)
            if newer and theirs is not None and _may_carry_grant(theirs, person_age, all_guardians):
                take = theirs
        if take is None:
            continue
        from_status = mine.status if mine else "unset"
        changes.append(Change(purpose, from_status, take.status))
        carried.append(take)
        replaced[purpose] = mine
    gpc_at = (
        device.gpc_opted_out_at
        if person.gpc_opted_out_at is None and device.gpc_opted_out_at is not None
        else None
    )
    return MergePlan(tuple(changes), tuple(carried), replaced, gpc_at, guardians)


def _may_carry_grant(r: PurposeRecord, person_age: AgeStatus, guardians: frozenset[str]) -> bool:
    if person_age != "child":
        return True
    if r.purpose in SALE_SHARE:
        return False  # a child's data is never sold or shared
    return r.actor.type == "guardian" and r.actor.id in guardians


def apply_merge(person: SubjectSnapshot, plan: MergePlan) -> SubjectSnapshot:
    """The person as the merge leaves it (sequence and hashes are the recorder's)."""
    records = dict(person.records)
    records.update({r.purpose: r for r in plan.carried})
    return replace(
        person,
        records=records,
        gpc_opted_out_at=plan.gpc_opted_out_at or person.gpc_opted_out_at,
        guardian_ids=person.guardian_ids | plan.guardians,
    )


def device_view(
    device: SubjectSnapshot, person: SubjectSnapshot, device_purposes: frozenset[str]
) -> SubjectSnapshot:
    """What a merged device id answers: the person for everything but the device's own
    purposes. Sequence, hash and last published decisions stay the device's own."""
    records = {k: r for k, r in person.records.items() if k not in device_purposes}
    records.update({k: r for k, r in device.records.items() if k in device_purposes})
    return replace(
        device,
        jurisdiction=person.jurisdiction,
        birth_date=person.birth_date,
        gpc_opted_out_at=person.gpc_opted_out_at,
        erased_at=person.erased_at or device.erased_at,
        guardian_ids=person.guardian_ids,
        records=records,
    )


def plan_unmerge(
    person: SubjectSnapshot,
    merge_sequence: int,
    replaced: Mapping[str, PurposeRecord | None],
    now: datetime,
) -> tuple[list[Change], list[PurposeRecord]]:
    """Undo: each grant the merge carried that still stands (the person's record is still
    the merge's) goes back to what the person had before; carried opt-outs stay."""
    changes: list[Change] = []
    records: list[PurposeRecord] = []
    for purpose in sorted(replaced):
        current = person.records.get(purpose)
        if current is None or current.sequence != merge_sequence or current.status != "granted":
            continue
        before = replaced[purpose]
        restored = before or PurposeRecord(purpose, "unset", "system", now, actor=Actor("system"))
        changes.append(Change(purpose, current.status, restored.status))
        records.append(restored)
    return changes, records


def new_anonymous_id() -> str:
    """A fresh anonymous subject id: 128 random bits, never derived from personal data."""
    return "anon:" + secrets.token_urlsafe(16)
