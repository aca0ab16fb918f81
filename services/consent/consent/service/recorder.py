"""Appends one change to a subject: ledger row (hash-chained), projection, event.

Every accepted change — preferences, profile, GPC, expiry, lapse, guardian, erasure,
merge, import — is a ``PendingEntry`` (domain/entries.py) given to ``record``, so that
each takes exactly one sequence number and projects exactly as ``ledger verify`` replays.
``record_many`` is the same for many subjects at once (an import's chunk): each entry built
by the same ``build``, all written by one statement.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from consent.adapters.ledger_append import ChangeRow
from consent.adapters.subject_store import TellState
from consent.domain.entries import PendingEntry, records_of
from consent.domain.events import DomainEvent, consent_event, decisions_map
from consent.domain.hashing import GENESIS, evidence_hash
from consent.domain.ledger import ChainedEntry
from consent.domain.merge import device_view
from consent.domain.model import Decision, Policy, SubjectSnapshot
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


def cached_policies(key: str) -> list[Policy] | None:
    hit = _policy_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _policy_ttl[0]:
        return hit[1]
    return None


async def load_policies(uow: UnitOfWork) -> list[Policy]:
    """Policy versions, cached per database: they change rarely, and every decision needs
    them. Publishing in this process, or a change feed's notification, clears the cache."""
    key = uow.database
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


@dataclass(frozen=True)
class Recorded:
    """One change as the recorder built it: the subject after it, its row, its event."""

    after: SubjectSnapshot
    row: ChangeRow
    event: DomainEvent


async def record(
    uow: UnitOfWork,
    snapshot: SubjectSnapshot,
    entry: PendingEntry,
    ctx: WriteContext,
    *,
    policies: list[Policy] | None = None,
    decide_as: SubjectSnapshot | None = None,
) -> tuple[SubjectSnapshot, DomainEvent]:
    """Write one ledger entry and its effects; return the new snapshot and its event.

    The new records are what the entry replays to (``records_of``, as ``ledger verify``
    rebuilds them). The event's decisions are those of ``decide_as`` when given, else of
    what the subject answers with after the change (``as_answered``)."""
    if policies is None:
        policies = await load_policies(uow)
    done = await build(uow, snapshot, entry, ctx, policies, decide_as)
    await write(uow, [done])
    return done.after, done.event


async def record_many(
    uow: UnitOfWork,
    items: Sequence[tuple[SubjectSnapshot, PendingEntry, WriteContext]],
    *,
    policies: list[Policy],
) -> list[Recorded]:
    """``record`` for many subjects (at most one entry each) with one write statement.

    Each is built exactly as ``record`` builds it, in the order given; a subject's chain
    and records depend only on its own snapshot. The one thing that reads another subject
    is a merged id's answer (``as_answered`` reads its person): when its person was built
    earlier in this call, what was built so far is written first, so the answer sees it,
    as when the entries are recorded one by one."""
    if len({snapshot.subject_id for snapshot, _, _ in items}) != len(items):
        raise ValueError("record_many takes one entry per subject")
    out: list[Recorded] = []
    pending: dict[str, Recorded] = {}
    for snapshot, entry, ctx in items:
        if snapshot.merged_into in pending:
            await write(uow, list(pending.values()))
            pending = {}
        done = await build(uow, snapshot, entry, ctx, policies, None)
        pending[snapshot.subject_id] = done
        out.append(done)
    await write(uow, list(pending.values()))
    return out


async def write(uow: UnitOfWork, built: Sequence[Recorded]) -> None:
    """The built changes' rows in one statement, then their events (in the given order)."""
    await uow.ledger.append_changes([b.row for b in built])
    for b in built:
        uow.emit(b.event)


async def build(
    uow: UnitOfWork,
    snapshot: SubjectSnapshot,
    entry: PendingEntry,
    ctx: WriteContext,
    policies: list[Policy],
    decide_as: SubjectSnapshot | None,
) -> Recorded:
    """Number, chain and project the entry, decide, and make its row and event (no write)."""
    sequence = snapshot.sequence + 1
    prev_hash = snapshot.last_hash or GENESIS
    after = replace(snapshot, sequence=sequence, records=dict(snapshot.records), **entry.profile)
    fields: dict[str, Any] = {
        "subject_id": snapshot.subject_id,
        "sequence": sequence,
        "type": entry.type,
        "changes": [c.as_dict() for c in entry.changes],
        "detail": entry.entry_detail(ctx.now),
        "policy_version": ctx.policy_version,
        "jurisdiction": after.jurisdiction,
        "channel": ctx.channel,
        "actor_type": ctx.actor.type,
        "actor_id": ctx.actor.id,
        "occurred_at": ctx.now,
    }
    new_records = records_of(fields)
    after.records.update(new_records)
    ev_hash = evidence_hash(ctx.evidence)
    digest = ChainedEntry(fields, prev_hash, ev_hash).hash()
    basis = decide_as if decide_as is not None else await as_answered(uow, after)
    decisions = decisions_for(basis, policies, ctx.now)
    told = TellState(
        decisions=decisions_map(decisions),
        age_status=None if basis.erased_at else age_status_of(basis, ctx.now),
        age_check_at=None if basis.erased_at else next_age_change(basis, ctx.now),
    )
    row = ChangeRow(
        {**fields, "evidence_hash": ev_hash, "prev_hash": prev_hash, "hash": digest},
        ctx.evidence,
        list(new_records.values()),
        dict(entry.profile),
        told,
    )
    after.last_hash = digest
    after.published_decisions = told.decisions
    after.recorded_age_status = told.age_status
    event = entry_event(
        entry,
        subject_id=snapshot.subject_id,
        sequence=sequence,
        decisions=decisions,
        jurisdiction=basis.jurisdiction,
        ctx=ctx,
        previous=previously_told(snapshot, policies, ctx.now),
    )
    return Recorded(after, row, event)


def entry_event(
    entry: PendingEntry,
    *,
    subject_id: str,
    sequence: int,
    decisions: Mapping[str, Decision],
    jurisdiction: str | None,
    ctx: WriteContext,
    previous: Mapping[str, bool] | None,
) -> DomainEvent:
    """The entry's event: consent-shaped (with ``event_extra``), or ``event_body``."""
    if entry.event_body is not None:
        body = {"subject_id": subject_id, "sequence": sequence, **entry.event_body}
        return DomainEvent(entry.type, subject_id, sequence, ctx.now, body)
    return consent_event(
        entry.type,
        subject_id=subject_id,
        sequence=sequence,
        changes=list(entry.changes),
        decisions=decisions,
        jurisdiction=jurisdiction,
        policy_version=ctx.policy_version,
        channel=ctx.channel,
        actor=ctx.actor,
        occurred_at=ctx.now,
        extra=entry.event_extra,
        previous=previous,
    )


def previously_told(
    snapshot: SubjectSnapshot, policies: list[Policy], now: datetime
) -> dict[str, bool] | None:
    """What the subject's previous event said; for a subject never written, what the
    decision API answered for it (a never-written subject's defaults)."""
    if snapshot.sequence == 0:
        return decisions_map(decisions_for(SubjectSnapshot(snapshot.subject_id), policies, now))
    return snapshot.published_decisions
