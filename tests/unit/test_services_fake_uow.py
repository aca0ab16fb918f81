"""Service functions on the in-memory unit of work (tests/unit/fake_uow.py): the rules of
a write — one ledger entry per accepted change, a chain ``ledger verify`` accepts, one
event per entry, nothing for a no-op, nothing committed by a service — without PostgreSQL.
The same paths run on PostgreSQL in tests/test_api_preferences.py and friends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from consent.domain.ledger import verify_chain
from consent.domain.model import Actor
from consent.service import preferences as svc
from consent.service.context import WriteContext
from consent.service.recorder import invalidate_policies
from tests.unit.fake_uow import FakeUnitOfWork

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def ctx(channel: str = "web", at: datetime = NOW, **kw) -> WriteContext:  # type: ignore[no-untyped-def]
    return WriteContext(channel=channel, actor=Actor("subject", "u-1"), now=at, **kw)


@pytest.fixture(autouse=True)
def _no_policy_cache():
    invalidate_policies()
    yield
    invalidate_policies()


def _chain_problems(uow: FakeUnitOfWork, subject_id: str) -> list[object]:
    entries = [e for e in uow.ledger.entries if e["subject_id"] == subject_id]
    evidence = {e["sequence"]: e["evidence"] for e in entries}
    head = uow.subjects.rows[subject_id]
    return list(
        verify_chain(
            subject_id,
            entries,
            evidence,
            head_sequence=head.sequence,
            head_hash=head.last_hash,
        )
    )


async def test_each_accepted_change_is_one_entry_one_event_and_the_chain_verifies():
    uow = FakeUnitOfWork()
    await svc.put_subject(uow, "u-1", jurisdiction="US-CA", birth_date=None, ctx=ctx())
    view = await svc.change_preferences(
        uow, "u-1", {"marketing_email": "granted", "sale": "denied"}, ctx(at=NOW + timedelta(1))
    )
    await svc.change_preferences(
        uow, "u-1", {"marketing_email": "denied"}, ctx(at=NOW + timedelta(2))
    )
    assert view.as_dict()["purposes"]["marketing_email"]["status"] == "granted"
    assert [e["sequence"] for e in uow.ledger.entries] == [1, 2, 3]
    assert [e.sequence for e in uow.events] == [1, 2, 3]
    assert [e.type for e in uow.events] == ["subject.updated", "consent.changed", "consent.changed"]
    assert _chain_problems(uow, "u-1") == []
    assert uow.commits == 0 and uow.outbox == []  # services never commit: their caller does


async def test_a_request_that_changes_nothing_records_nothing():
    uow = FakeUnitOfWork()
    await svc.change_preferences(uow, "u-2", {"analytics": "granted"}, ctx())
    before = (len(uow.ledger.entries), len(uow.events))
    view = await svc.change_preferences(uow, "u-2", {"analytics": "granted"}, ctx())
    assert (len(uow.ledger.entries), len(uow.events)) == before == (1, 1)
    assert view.snapshot.sequence == 1


async def test_gpc_on_read_records_the_opt_out_once():
    uow = FakeUnitOfWork()
    await svc.put_subject(uow, "u-3", jurisdiction="US-CA", birth_date=None, ctx=ctx())
    first = await svc.gpc_on_read(uow, "u-3", ctx("gpc", NOW + timedelta(1)))
    again = await svc.gpc_on_read(uow, "u-3", ctx("gpc", NOW + timedelta(2)))
    assert first.gpc_honored and again.gpc_honored
    purposes = again.as_dict()["purposes"]
    assert purposes["sale"]["status"] == purposes["share"]["status"] == "denied"
    assert len(uow.ledger.entries) == 2  # the profile, then the opt-out: once
    assert _chain_problems(uow, "u-3") == []


async def test_an_unknown_policy_version_writes_nothing():
    uow = FakeUnitOfWork()
    with pytest.raises(svc.UnknownValue):
        await svc.change_preferences(
            uow, "u-4", {"analytics": "granted"}, ctx(policy_version="v-missing")
        )
    assert uow.ledger.entries == [] and uow.events == []


async def test_the_birth_date_never_reaches_the_ledger_or_the_event():
    uow = FakeUnitOfWork()
    await svc.put_subject(uow, "u-5", jurisdiction="DE", birth_date=date(1990, 5, 17), ctx=ctx())
    [entry] = uow.ledger.entries
    [event] = uow.events
    assert "1990" not in repr(entry) and "1990" not in repr(event.data)
    assert uow.subjects.rows["u-5"].birth_date == date(1990, 5, 17)
