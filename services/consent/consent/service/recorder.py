"""Appends one change to a subject: ledger row (hash-chained), projection, event.

Every accepted change — preferences, profile, GPC, expiry, lapse, guardian, erasure —
goes through ``record`` so that each takes exactly one sequence number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from consent.adapters.subject_store import TellState
from consent.domain.events import DomainEvent, consent_event, decisions_map
from consent.domain.hashing import GENESIS, evidence_hash
from consent.domain.ledger import ChainedEntry
from consent.domain.merge import device_view
from consent.domain.model import Change, Policy, PurposeRecord, SubjectSnapshot
from consent.service.context import WriteContext
from consent.service.decisions import (
    age_status_of,
    decisions_for,
    device_purposes,
    next_age_change,
)
from consent.service.unit_of_work import UnitOfWork

POLICY_TTL_S = 1.0
_policy_cache: dict[str, tuple[float, list[Policy]]] = {}
# How long a cached list may serve: a second, or, while a change feed (adapters/change_feed.py)
# drops the cache on every commit to policy_versions, up to the view's maximum age.
_policy_ttl = [POLICY_TTL_S]


def _policy_key(uow: UnitOfWork) -> str:
    bind = uow.session.bind
    return str(bind.engine.url) if bind is not None else ""


def cached_policies(key: str) -> list[Policy] | None:
    hit = _policy_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _policy_ttl[0]:
        return hit[1]
    return None


async def load_policies(uow: UnitOfWork) -> list[Policy]:
    """Policy versions, cached per database: they change rarely, and every decision needs
    them. Publishing in this process, or a change feed's notification, clears the cache."""
    key = _policy_key(uow)
    hit = cached_policies(key)
    if hit is not None:
        return hit
    policies = await uow.policies.all()
    _policy_cache[key] = (time.monotonic(), policies)
    return policies


def invalidate_policies() -> None:
    _policy_cache.clear()


def policies_followed(live: bool, max_age_s: float) -> None:
    """A change feed is (or is no longer) dropping the cache on every policy commit."""
    _policy_cache.clear()
    _policy_ttl[0] = max(POLICY_TTL_S, max_age_s) if live else POLICY_TTL_S


async def as_answered(uow: UnitOfWork, snapshot: SubjectSnapshot) -> SubjectSnapshot:
    """What the subject answers with: a merged anonymous id answers for its person (its
    own device purposes aside, see ``domain/merge.py``)."""
    if snapshot.merged_into is None:
        return snapshot
    person = await uow.subjects.snapshot(snapshot.merged_into)
    return device_view(snapshot, person, device_purposes())


def records_after(
    snapshot: SubjectSnapshot,
    changes: list[Change],
    ctx: WriteContext,
    sequence: int,
    validity_days: Mapping[str, int | None],
    ended_reason: str | None = None,
) -> list[PurposeRecord]:
    from datetime import timedelta

    out = []
    for c in changes:
        days = validity_days.get(c.purpose)
        expires = ctx.now + timedelta(days=days) if days and c.to_status == "granted" else None
        out.append(
            PurposeRecord(
                purpose=c.purpose,
                status=c.to_status,
                source=ctx.channel,
                updated_at=ctx.now,
                sequence=sequence,
                policy_version=ctx.policy_version,
                expires_at=expires,
                actor=ctx.actor,
                ended_reason=ended_reason,
            )
        )
    return out


async def record(
    uow: UnitOfWork,
    snapshot: SubjectSnapshot,
    *,
    event_type: str,
    ctx: WriteContext,
    changes: list[Change] | None = None,
    new_records: list[PurposeRecord] | None = None,
    profile: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    event_extra: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
    policies: list[Policy] | None = None,
    decide_as: SubjectSnapshot | None = None,
) -> tuple[SubjectSnapshot, DomainEvent]:
    """Write one ledger entry and its effects; return the new snapshot and its event.

    ``profile`` holds subject columns to update (it may contain personal data, which never
    reaches the ledger or the event: ``detail`` says only what changed). The event's
    decisions are those of ``decide_as`` when given, else of what the subject answers with
    after the change (``as_answered``).
    """
    changes = changes or []
    sequence = snapshot.sequence + 1
    prev_hash = snapshot.last_hash or GENESIS
    after = replace(snapshot, sequence=sequence, records=dict(snapshot.records))
    for key, value in (profile or {}).items():
        setattr(after, key, value)
    for r in new_records or []:
        after.records[r.purpose] = r
    detail = dict(detail or {})
    expiries = {r.purpose: r.expires_at.isoformat() for r in new_records or [] if r.expires_at}
    if expiries:
        detail["expires_at"] = expiries
    fields: dict[str, Any] = {
        "subject_id": snapshot.subject_id,
        "sequence": sequence,
        "type": event_type,
        "changes": [c.as_dict() for c in changes],
        "detail": detail,
        "policy_version": ctx.policy_version,
        "jurisdiction": after.jurisdiction,
        "channel": ctx.channel,
        "actor_type": ctx.actor.type,
        "actor_id": ctx.actor.id,
        "occurred_at": ctx.now,
    }
    ev_hash = evidence_hash(ctx.evidence)
    digest = ChainedEntry(fields, prev_hash, ev_hash).hash()
    if policies is None:
        policies = await load_policies(uow)
    basis = decide_as if decide_as is not None else await as_answered(uow, after)
    decisions = decisions_for(basis, policies, ctx.now)
    told = TellState(
        decisions=decisions_map(decisions),
        age_status=None if basis.erased_at else age_status_of(basis, ctx.now),
        age_check_at=None if basis.erased_at else next_age_change(basis, ctx.now),
    )
    await uow.ledger.append_change(
        {**fields, "evidence_hash": ev_hash, "prev_hash": prev_hash, "hash": digest},
        ctx.evidence,
        new_records or [],
        profile or {},
        told,
    )
    after.last_hash = digest
    after.published_decisions = told.decisions
    after.recorded_age_status = told.age_status
    if event_data is not None:
        event = DomainEvent(
            event_type,
            snapshot.subject_id,
            sequence,
            ctx.now,
            {"subject_id": snapshot.subject_id, "sequence": sequence, **event_data},
        )
        uow.emit(event)
        return after, event
    event = consent_event(
        event_type,
        subject_id=snapshot.subject_id,
        sequence=sequence,
        changes=changes,
        decisions=decisions,
        jurisdiction=basis.jurisdiction,
        policy_version=ctx.policy_version,
        channel=ctx.channel,
        actor=ctx.actor,
        occurred_at=ctx.now,
        extra=event_extra,
        previous=previously_told(snapshot, policies, ctx.now),
    )
    uow.emit(event)
    return after, event


def previously_told(
    snapshot: SubjectSnapshot, policies: list[Policy], now: datetime
) -> dict[str, bool] | None:
    """What the subject's previous event said; for a subject never written, what the
    decision API answered for it (a never-written subject's defaults)."""
    if snapshot.sequence == 0:
        return decisions_map(decisions_for(SubjectSnapshot(snapshot.subject_id), policies, now))
    return snapshot.published_decisions
