"""What a ledger entry sets, as the recorder writes it and ``ledger verify`` replays it:
one function builds a record from an entry, so the two cannot disagree. Properties over
entries of every shape: own provenance, carried provenance, expiries, ends."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.domain.entries import (
    PendingEntry,
    grant_expiry,
    project,
    record_from_dict,
    record_to_dict,
    records_of,
)
from consent.domain.hashing import canonical
from consent.domain.model import Actor, Change, PurposeRecord

PURPOSES = ["marketing_email", "analytics", "sale", "share"]
TYPES = ["consent.changed", "consent.expired", "consent.lapsed", "subject.merged"]
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)

times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
statuses = st.sampled_from(["granted", "denied", "unset"])


@st.composite
def carried_records(draw: st.DrawFn, purpose: str) -> PurposeRecord:
    at = draw(times)
    status = draw(statuses)
    return PurposeRecord(
        purpose=purpose,
        status=status,
        source=draw(st.sampled_from(["web", "import", "gpc"])),
        updated_at=at,
        policy_version=draw(st.none() | st.just("2026-01")),
        expires_at=grant_expiry(status, at, draw(st.none() | st.integers(1, 800))),
        actor=Actor(draw(st.sampled_from(["subject", "system", "guardian"])), "x"),
        ended_reason=draw(st.none() | st.just("expired")),
    )


@st.composite
def pending_entries(draw: st.DrawFn) -> PendingEntry:
    purposes = draw(st.lists(st.sampled_from(PURPOSES), unique=True, max_size=4))
    changes = tuple(Change(p, draw(statuses), draw(statuses)) for p in purposes)
    carried = tuple(
        replace_status(draw(carried_records(c.purpose)), c.to_status)
        for c in changes
        if draw(st.booleans())
    )
    days = {p: draw(st.none() | st.integers(1, 800)) for p in purposes}
    return PendingEntry(draw(st.sampled_from(TYPES)), changes, carried=carried, validity_days=days)


def replace_status(r: PurposeRecord, status: str) -> PurposeRecord:
    return replace(r, status=status)  # type: ignore[arg-type]


def chained(entry: PendingEntry, sequence: int, at: datetime) -> dict[str, Any]:
    """The fields as the recorder chains them, through JSON as the ledger stores them."""
    detail = json.loads(canonical(entry.entry_detail(at)))
    return {
        "subject_id": "s",
        "sequence": sequence,
        "type": entry.type,
        "changes": [c.as_dict() for c in entry.changes],
        "detail": detail,
        "policy_version": "2026-05",
        "jurisdiction": "US-CA",
        "channel": "web",
        "actor_type": "subject",
        "actor_id": "s",
        "occurred_at": at,
    }


@given(pending_entries(), times)
def test_every_change_sets_one_record_and_carried_ones_keep_their_provenance(
    entry: PendingEntry, at: datetime
) -> None:
    records = records_of(chained(entry, 7, at))
    assert set(records) == {c.purpose for c in entry.changes}
    carried = {r.purpose: r for r in entry.carried}
    for purpose, rec in records.items():
        assert rec.sequence == 7
        assert rec.status == next(c.to_status for c in entry.changes if c.purpose == purpose)
        if purpose in carried:
            assert rec == replace(carried[purpose], sequence=7)
        else:
            assert (rec.source, rec.updated_at, rec.actor) == ("web", at, Actor("subject", "s"))
            assert rec.expires_at == grant_expiry(rec.status, at, entry.validity_days[purpose])
            ended = {"consent.expired": "expired", "consent.lapsed": "lapsed"}
            assert rec.ended_reason == ended.get(entry.type)


@given(st.lists(st.tuples(pending_entries(), times), max_size=6))
def test_the_projection_is_the_last_entry_for_each_purpose(
    entries: list[tuple[PendingEntry, datetime]],
) -> None:
    rows = [chained(e, i + 1, at) for i, (e, at) in enumerate(entries)]
    projected = project(rows)
    for purpose, rec in projected.items():
        last = max(i + 1 for i, (e, _) in enumerate(entries) if purpose in dict(
            (c.purpose, c) for c in e.changes))  # fmt: skip
        assert rec.sequence == last


@given(carried_records("analytics"))
def test_a_record_round_trips_through_its_json(rec: PurposeRecord) -> None:
    assert record_from_dict(record_to_dict(rec), rec.sequence) == rec


def test_re_consent_announcements_restate_and_set_nothing() -> None:
    entry = PendingEntry("consent.reconsent_required", (Change("sale", "granted", "granted"),))
    assert records_of(chained(entry, 3, NOW)) == {}


def test_a_carried_record_must_be_one_of_the_changes() -> None:
    stray = PurposeRecord("sale", "denied", "gpc", NOW)
    with pytest.raises(ValueError):
        PendingEntry("subject.merged", (Change("analytics", "unset", "granted"),), carried=(stray,))


def test_grants_expire_after_their_validity_and_nothing_else_does() -> None:
    assert grant_expiry("granted", NOW, 30) == NOW + timedelta(days=30)
    assert grant_expiry("denied", NOW, 30) is None
    assert grant_expiry("granted", NOW, None) is None
