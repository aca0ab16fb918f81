"""Preference use cases: read, change, GPC, subject profile."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from consent.catalog import load_catalog
from consent.domain import ages, preferences
from consent.domain.authority import check_minor_profile_change
from consent.domain.entries import PendingEntry
from consent.domain.merge import device_view
from consent.domain.model import (
    Decision,
    DomainError,
    Policy,
    PurposeRecord,
    Status,
    SubjectSnapshot,
)
from consent.service.context import WriteContext
from consent.service.decisions import (
    age_rules,
    age_status_of,
    decide_pairs,
    decisions_for,
    device_purposes,
)
from consent.service.recorder import as_answered, load_policies, record
from consent.service.unit_of_work import UnitOfWork
from consent_common.timefmt import rfc3339


@dataclass
class PreferencesView:
    snapshot: SubjectSnapshot
    decisions: dict[str, Decision]
    age_status: str
    gpc_honored: bool
    policies: list[Policy]
    now: datetime

    def as_dict(self) -> dict[str, Any]:
        from consent.domain.preferences import is_effective

        purposes: dict[str, Any] = {}
        for key, decision in self.decisions.items():
            r: PurposeRecord | None = self.snapshot.records.get(key)
            purposes[key] = {
                "status": r.status if r else "unset",
                "allowed": decision.allowed,
                "reason": decision.reason,
                "source": r.source if r else None,
                "updated_at": rfc3339(r.updated_at) if r else None,
                "expires_at": rfc3339(r.expires_at) if r and r.expires_at else None,
                "policy_version": r.policy_version if r else None,
                "needs_reconsent": decision.reason == "needs_reconsent"
                or bool(
                    r
                    and r.status == "granted"
                    and not is_effective(r, self.policies, self.now)
                    and decision.reason != "expired"
                ),
            }
        return {
            "subject_id": self.snapshot.subject_id,
            "sequence": self.snapshot.sequence,
            "jurisdiction": self.snapshot.jurisdiction,
            "age_status": self.age_status,
            "gpc_honored": self.gpc_honored,
            "purposes": purposes,
            **({"merged_into": self.snapshot.merged_into} if self.snapshot.merged_into else {}),
        }


def view(snapshot: SubjectSnapshot, policies: list[Policy], now: datetime) -> PreferencesView:
    return PreferencesView(
        snapshot=snapshot,
        decisions=decisions_for(snapshot, policies, now),
        age_status=age_status_of(snapshot, now),
        gpc_honored=snapshot.gpc_opted_out_at is not None,
        policies=policies,
        now=now,
    )


async def get_preferences(uow: UnitOfWork, subject_id: str, now: datetime) -> PreferencesView:
    snapshot = await as_answered(uow, await uow.subjects.snapshot(subject_id))
    return view(snapshot, await load_policies(uow), now)


async def get_decisions(
    uow: UnitOfWork, pairs: Sequence[tuple[str, str]], now: datetime
) -> list[Decision]:
    """Decision reads (single and batch): one query for the subjects, reading only the
    records of the purposes asked for."""
    ids = sorted({s for s, _ in pairs})
    purposes = sorted({p for _, p in pairs})
    snapshots = await uow.subjects.snapshots(ids, purposes=purposes)
    people = sorted({s.merged_into for s in snapshots.values() if s.merged_into})
    if people:  # merged anonymous ids answer for their person
        found = await uow.subjects.snapshots(people, purposes=purposes)
        device = device_purposes()
        for sid, snap in list(snapshots.items()):
            if snap.merged_into:
                person = found.get(snap.merged_into) or SubjectSnapshot(snap.merged_into)
                snapshots[sid] = device_view(snap, person, device)
    return decide_pairs(snapshots, pairs, await load_policies(uow), now)


async def _resolve_policy_version(uow: UnitOfWork, ctx: WriteContext) -> WriteContext:
    """``ctx`` naming the policy version it is written under: the one in force when the
    request named none; an unknown one named is refused."""
    policies = await load_policies(uow)
    if ctx.policy_version is None:
        in_force = [p for p in policies if p.effective_at <= ctx.now]
        if not in_force:
            return ctx
        return replace(ctx, policy_version=max(in_force, key=lambda p: p.effective_at).version)
    if (
        ctx.policy_version not in {p.version for p in policies}
        and await uow.policies.get(ctx.policy_version) is None  # maybe newer than the cache
    ):
        raise UnknownValue("policy_version", f"unknown policy version {ctx.policy_version!r}")
    return ctx


class UnknownValue(Exception):
    """A request naming something that does not exist (HTTP 422)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


async def honour_gpc(
    uow: UnitOfWork, snapshot: SubjectSnapshot, ctx: WriteContext, policies: list[Policy]
) -> SubjectSnapshot:
    """Record the opt-out of sale and share carried by ``Sec-GPC: 1`` (channel ``gpc``)."""
    if snapshot.erased_at is not None:
        return snapshot
    changes = preferences.plan_gpc_opt_out(snapshot)
    if not changes:
        return snapshot
    gpc_ctx = WriteContext(
        channel="gpc",
        actor=ctx.actor,
        now=ctx.now,
        policy_version=ctx.policy_version,
        evidence={**ctx.evidence, "gpc": True},
    )
    entry = PendingEntry("consent.changed", tuple(changes), profile={"gpc_opted_out_at": ctx.now})
    after, _ = await record(uow, snapshot, entry, gpc_ctx, policies=policies)
    return after


async def change_preferences(
    uow: UnitOfWork,
    subject_id: str,
    requested: dict[str, Status],
    ctx: WriteContext,
    *,
    gpc: bool = False,
    precondition: Callable[[int], None] | None = None,
) -> PreferencesView:
    """``precondition`` sees the locked subject's sequence first (HTTP If-Match). Purpose
    keys were checked against the catalog at the edge (api/vocabulary.py)."""
    ctx = await _resolve_policy_version(uow, ctx)
    policies = await load_policies(uow)
    snapshot = await uow.subjects.snapshot(subject_id, for_update=True)
    if precondition is not None:
        precondition(snapshot.sequence)
    if snapshot.merged_into is not None:
        refuse_personal_write(snapshot, requested)
        if gpc:  # a GPC signal from the person's device is the person's
            await honour_gpc(uow, await _locked_person(uow, snapshot), ctx, policies)
    elif gpc:
        snapshot = await honour_gpc(uow, snapshot, ctx, policies)
    answering = await as_answered(uow, snapshot)  # a merged device: the person's age rules
    changes = preferences.plan_changes(
        answering,
        requested,
        now=ctx.now,
        policies=policies,
        age_status=age_status_of(answering, ctx.now),
        acting_guardian=ctx.acting_guardian,
    )
    if changes:
        validity = {k: p.validity_days for k, p in load_catalog().items()}
        entry = PendingEntry("consent.changed", tuple(changes), validity_days=validity)
        snapshot, _ = await record(uow, snapshot, entry, ctx, policies=policies)
    return view(await as_answered(uow, snapshot), policies, ctx.now)


def refuse_personal_write(snapshot: SubjectSnapshot, requested: Iterable[str] = ("*",)) -> None:
    """A merged anonymous id records only its device purposes; anything else is the
    person's to record (409 ``subject_merged``)."""
    personal = sorted(set(requested) - device_purposes())
    if snapshot.merged_into is not None and personal:
        raise DomainError(
            "subject_merged",
            f"this anonymous id is merged into {snapshot.merged_into!r}: record "
            f"{', '.join(personal)} for that subject",
        )


async def _locked_person(uow: UnitOfWork, device: SubjectSnapshot) -> SubjectSnapshot:
    assert device.merged_into is not None
    return await uow.subjects.snapshot(device.merged_into, for_update=True)


async def gpc_on_read(uow: UnitOfWork, subject_id: str, ctx: WriteContext) -> PreferencesView:
    """A subject's own GET carrying ``Sec-GPC: 1``: record the opt-out once, then read."""
    policies = await load_policies(uow)
    snapshot = await uow.subjects.snapshot(subject_id)
    target = snapshot
    if snapshot.merged_into is not None:  # the signal is the person's
        target = await uow.subjects.snapshot(snapshot.merged_into)
    if preferences.plan_gpc_opt_out(target) and target.erased_at is None:
        ctx = await _resolve_policy_version(uow, ctx)
        target = await uow.subjects.snapshot(target.subject_id, for_update=True)
        after = await honour_gpc(uow, target, ctx, policies)
        snapshot = after if snapshot.merged_into is None else snapshot
    return view(await as_answered(uow, snapshot), policies, ctx.now)


async def put_subject(
    uow: UnitOfWork,
    subject_id: str,
    *,
    jurisdiction: str,
    birth_date: date | None,
    ctx: WriteContext,
    birth_date_given: bool = True,
    may_write_minors: bool = False,
) -> PreferencesView:
    """Create or update the profile. The birth date never reaches the ledger or an event.
    A known minor's age-relevant facts are locked (checked on the locked row)."""
    policies = await load_policies(uow)
    snapshot = await uow.subjects.snapshot(subject_id, for_update=True)
    if snapshot.erased_at is not None:
        raise DomainError("subject_erased", "this subject has been erased")
    refuse_personal_write(snapshot)
    profile: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    if snapshot.jurisdiction != jurisdiction:
        profile["jurisdiction"] = jurisdiction
        detail["jurisdiction"] = {"from": snapshot.jurisdiction, "to": jurisdiction}
    if birth_date_given and snapshot.birth_date != birth_date:
        profile["birth_date"] = birth_date
        detail["birth_date_changed"] = True
    before_age = age_status_of(snapshot, ctx.now)
    check_minor_profile_change(
        before_age,
        changes_age_facts=bool(profile),
        may_write_minors=may_write_minors,
        acting_guardian=ctx.acting_guardian is not None,
    )
    if profile:
        after_age = ages.age_status(birth_date, jurisdiction, ctx.now, age_rules())
        detail["age_status"] = {"from": before_age, "to": after_age}
        entry = PendingEntry(
            "subject.updated", detail=detail, profile=profile, event_extra={"age_status": after_age}
        )
        snapshot, _ = await record(uow, snapshot, entry, ctx, policies=policies)
    return view(snapshot, policies, ctx.now)
