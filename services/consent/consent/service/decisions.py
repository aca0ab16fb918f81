"""Builds the decision context for a subject and evaluates decisions (no SQL here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from consent.catalog import load_age_rules, load_catalog
from consent.domain import ages, jurisdictions
from consent.domain.decisions import DecisionContext, decide, decide_all
from consent.domain.merge import DEVICE_CATEGORY
from consent.domain.model import AgeStatus, Decision, Policy, SubjectSnapshot
from consent.settings import get_settings


def age_rules() -> ages.AgeRules:
    s = get_settings()
    return load_age_rules(s.child_age_floor_eu_eea, s.child_age_floor_other)


def device_purposes() -> frozenset[str]:
    """Purposes bound to one terminal (ePrivacy): they never merge across subjects."""
    return frozenset(k for k, p in load_catalog().items() if p.category == DEVICE_CATEGORY)


def age_status_of(snapshot: SubjectSnapshot, now: datetime) -> AgeStatus:
    return ages.age_status(snapshot.birth_date, snapshot.jurisdiction, now, age_rules())


def next_age_change(snapshot: SubjectSnapshot, now: datetime) -> datetime | None:
    return ages.next_status_change(snapshot.birth_date, snapshot.jurisdiction, now, age_rules())


def decision_context(
    snapshot: SubjectSnapshot, policies: Iterable[Policy], now: datetime
) -> DecisionContext:
    return DecisionContext(
        regime=jurisdictions.regime(snapshot.jurisdiction),
        age_status=age_status_of(snapshot, now),
        has_guardian=bool(snapshot.guardian_ids),
        erased=snapshot.erased_at is not None,
        gpc_opted_out_at=snapshot.gpc_opted_out_at,
        policies=tuple(policies),
    )


def decisions_for(
    snapshot: SubjectSnapshot, policies: Iterable[Policy], now: datetime
) -> dict[str, Decision]:
    ctx = decision_context(snapshot, policies, now)
    return decide_all(ctx, load_catalog(), snapshot.records, now)


def decide_pairs(
    snapshots: Mapping[str, SubjectSnapshot],
    pairs: Sequence[tuple[str, str]],
    policies: Iterable[Policy],
    now: datetime,
) -> list[Decision]:
    """Decisions for (subject, purpose) pairs, in order: only the purposes asked for are
    decided, and each subject's context is built once. A subject not in ``snapshots`` has
    recorded nothing."""
    catalog = load_catalog()
    policies = tuple(policies)
    contexts: dict[str, tuple[SubjectSnapshot, DecisionContext]] = {}
    out = []
    for subject_id, purpose in pairs:
        if subject_id not in contexts:
            snap = snapshots.get(subject_id) or SubjectSnapshot(subject_id=subject_id)
            contexts[subject_id] = (snap, decision_context(snap, policies, now))
        snap, ctx = contexts[subject_id]
        out.append(decide(ctx, catalog[purpose], snap.records.get(purpose), now))
    return out
