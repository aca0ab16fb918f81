"""Coming of age with a frozen clock: the guardian's grants lapse once, decisions change.

Subjects are children today and come of age on a known future day, so the clock is
"frozen" by passing that day as ``now`` to the scheduler job and to the decision code.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent.adapters.repositories import SubjectRepository
from consent.domain.model import Actor, DomainError
from consent.service import preferences
from consent.service.age_transitions import record_age_transitions as lapse_came_of_age
from consent.service.context import WriteContext
from consent.service.decisions import age_status_of, decisions_for
from consent.service.recorder import load_policies
from consent.service.unit_of_work import UnitOfWork
from consent.settings import Settings
from tests.conftest import admin, user

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app's own scheduler runs on the real clock; keep it out of the frozen-clock runs."""
    return settings.model_copy(update={"scheduler_enabled": False})


def birthday_ahead(days: int = 10) -> datetime:
    """Midnight UTC of a day ``days`` ahead (never 29 February)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    if (day.month, day.day) == (2, 29):
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def born(age: int, birthday: datetime) -> str:
    return date(birthday.year - age, birthday.month, birthday.day).isoformat()


async def minor_with_guardian_grants(
    client: Any, sid: str, jurisdiction: str, birth: str, purposes: list[str]
) -> None:
    r = await client.put(
        f"/v1/subjects/{sid}",
        headers=admin(),
        json={"jurisdiction": jurisdiction, "birth_date": birth},
    )
    assert r.status_code == 200 and r.json()["age_status"] == "child", r.text
    r = await client.post(
        f"/v1/subjects/{sid}/guardians",
        headers=admin(),
        json={
            "guardian_id": f"g-{sid}",
            "verification": {
                "method": "card_transaction",
                "reference": "tx-1",
                "verified_at": datetime.now(UTC).isoformat(),
            },
        },
    )
    assert r.status_code == 201, r.text
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences",
        headers=user(f"g-{sid}"),
        json={"purposes": dict.fromkeys(purposes, "granted")},
    )
    assert r.status_code == 200, r.text


async def view_at(sessions: Sessions, sid: str, now: datetime) -> dict[str, Any]:
    async with sessions() as session:
        snapshot = await SubjectRepository(session).snapshot(sid)
        policies = await load_policies(UnitOfWork(session))
    out = preferences.view(snapshot, policies, now).as_dict()
    decisions = decisions_for(snapshot, policies, now)
    assert {k: (d.allowed, d.reason) for k, d in decisions.items()} == {
        k: (p["allowed"], p["reason"]) for k, p in out["purposes"].items()
    }
    assert out["age_status"] == age_status_of(snapshot, now)
    return out


def decided(view: dict[str, Any], *purposes: str) -> dict[str, tuple[Any, ...]]:
    return {
        p: (
            view["purposes"][p]["status"],
            view["purposes"][p]["allowed"],
            view["purposes"][p]["reason"],
            view["purposes"][p]["needs_reconsent"],
        )
        for p in purposes
    }


async def lapses(db: asyncpg.Connection, sid: str) -> tuple[int, int]:
    """consent.lapsed rows in the ledger and in the outbox."""
    ledger = await db.fetchval(
        "SELECT count(*) FROM consent_ledger WHERE subject_id = $1 AND type = 'consent.lapsed'",
        sid,
    )
    out = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE aggregateid = $1 AND type = 'consent.lapsed'", sid
    )
    return ledger, out


async def assert_no_birth_date_in_events(db: asyncpg.Connection, births: list[str]) -> None:
    def keys(v: Any) -> set[str]:
        if isinstance(v, dict):
            return set(v) | {k for x in v.values() for k in keys(x)}
        return {k for x in v for k in keys(x)} if isinstance(v, list) else set()

    for row in await db.fetch("SELECT payload::text AS p FROM outbox"):
        assert "birth_date" not in keys(json.loads(row["p"])), row["p"]
        assert not [b for b in births if b in row["p"]], row["p"]


async def test_coming_of_age_lapses_guardian_grants_once(client, db, engines):
    sessions = engines[0]
    b_day = birthday_ahead(10)
    de_birth, ca_birth = born(16, b_day), born(13, b_day + timedelta(days=5))
    await minor_with_guardian_grants(client, "de", "DE", de_birth, ["marketing_email", "analytics"])
    await minor_with_guardian_grants(client, "ca", "US-CA", ca_birth, ["marketing_email"])
    eve = b_day - timedelta(seconds=1)

    # the last second of being 15: nothing lapses, the guardian's grants speak
    assert await lapse_came_of_age(sessions, eve) == 0
    v = await view_at(sessions, "de", eve)
    assert v["age_status"] == "child"
    assert decided(v, "marketing_email", "sale") == {
        "marketing_email": ("granted", True, "explicit_grant", False),
        "sale": ("unset", False, "child_data_never_sold", False),
    }

    # the birthday, before any write: decisions already change (derived from the clock)
    v = await view_at(sessions, "de", b_day)
    assert v["age_status"] == "adult"
    assert decided(v, "marketing_email", "analytics") == {
        "marketing_email": ("granted", False, "needs_reconsent", True),
        "analytics": ("granted", False, "needs_reconsent", True),
    }
    seq_before = v["sequence"]

    # the scheduler lapses them exactly once; "ca" is still 12
    assert await lapse_came_of_age(sessions, b_day) == 1
    assert await lapse_came_of_age(sessions, b_day) == 0
    assert await lapse_came_of_age(sessions, b_day + timedelta(days=1)) == 0
    assert await lapses(db, "de") == (1, 1)
    assert await lapses(db, "ca") == (0, 0)
    v = await view_at(sessions, "de", b_day)
    assert v["sequence"] == seq_before + 1
    assert decided(v, "marketing_email", "analytics", "sale") == {
        "marketing_email": ("unset", False, "needs_reconsent", True),
        "analytics": ("unset", False, "needs_reconsent", True),
        "sale": ("unset", False, "regime_default", False),
    }
    row = await db.fetchrow(
        "SELECT payload::text AS p, sequence, occurred_at FROM outbox "
        "WHERE aggregateid = 'de' AND type = 'consent.lapsed'"
    )
    event = json.loads(row["p"])
    assert row["sequence"] == event["sequence"] == seq_before + 1
    assert row["occurred_at"] == b_day
    assert event["reason"] == "came_of_age"
    assert event["actor"] == {"type": "system", "id": "coming-of-age-scheduler"}
    assert event["changes"] == [
        {"purpose": "analytics", "from": "granted", "to": "unset"},
        {"purpose": "marketing_email", "from": "granted", "to": "unset"},
    ]
    assert event["decisions"]["marketing_email"] is False

    # now of age: the guardian may no longer grant, the subject may
    async with sessions() as session:
        uow = UnitOfWork(session)
        ctx = WriteContext("guardian", Actor("guardian", "g-de"), now=b_day, acting_guardian="g-de")
        with pytest.raises(DomainError) as err:
            await preferences.change_preferences(uow, "de", {"analytics": "granted"}, ctx)
        assert err.value.code == "guardian_authority_ended"
        await uow.rollback()
    async with sessions() as session:
        uow = UnitOfWork(session)
        ctx = WriteContext("web", Actor("subject", "de"), now=b_day)
        own = await preferences.change_preferences(uow, "de", {"marketing_email": "granted"}, ctx)
        await uow.commit()
    assert own.decisions["marketing_email"].reason == "explicit_grant"
    assert await lapse_came_of_age(sessions, b_day + timedelta(days=2)) == 0
    assert (await view_at(sessions, "de", b_day))["purposes"]["marketing_email"]["allowed"]

    # California at 13: teen_opt_in; the guardian's grant lapses, sale still needs an opt-in
    ca_day = b_day + timedelta(days=5)
    assert await lapse_came_of_age(sessions, ca_day) == 1
    assert await lapse_came_of_age(sessions, ca_day) == 0
    assert await lapses(db, "ca") == (1, 1)
    v = await view_at(sessions, "ca", ca_day)
    assert v["age_status"] == "teen_opt_in"
    assert decided(v, "marketing_email", "sale", "share") == {
        "marketing_email": ("unset", True, "needs_reconsent", True),  # US: opt-out default
        "sale": ("unset", False, "regime_default", False),
        "share": ("unset", False, "regime_default", False),
    }
    assert await lapses(db, "de") == (1, 1)
    await assert_no_birth_date_in_events(db, [de_birth, ca_birth])


MINORS = [("c-de", "DE", 16), ("c-fr", "FR", 16), ("c-it", "IT", 16), ("c-gb", "GB", 13),
          ("c-tx", "US-TX", 13), ("c-ca", "US-CA", 13), ("c-br", "BR", 13)]  # fmt: skip


async def test_concurrent_schedulers_emit_each_lapse_exactly_once(client, db, engines):
    b_day = birthday_ahead(20)
    births = [born(age, b_day) for _, _, age in MINORS]
    for (sid, jurisdiction, _), birth in zip(MINORS, births, strict=True):
        await minor_with_guardian_grants(client, sid, jurisdiction, birth, ["marketing_email"])
    now = b_day + timedelta(hours=9)

    # two "replicas" (separate engines and pools), each running the job twice at once
    done = await asyncio.gather(*(lapse_came_of_age(s, now) for s in engines * 2))
    assert sum(done) == len(MINORS)
    done = await asyncio.gather(*(lapse_came_of_age(s, now) for s in engines))
    assert done == [0, 0]
    for sid, _, _ in MINORS:
        assert await lapses(db, sid) == (1, 1), sid
        seqs = await db.fetch(
            "SELECT sequence FROM consent_ledger WHERE subject_id = $1 ORDER BY sequence", sid
        )
        assert [r["sequence"] for r in seqs] == [1, 2, 3, 4]  # profile, link, grant, lapse
        v = await view_at(engines[1], sid, now)
        assert v["age_status"] in ("adult", "teen_opt_in")
        assert v["purposes"]["marketing_email"]["status"] == "unset"
        assert v["purposes"]["marketing_email"]["reason"] == "needs_reconsent"
    total = await db.fetchval("SELECT count(*) FROM outbox WHERE type = 'consent.lapsed'")
    assert total == len(MINORS)
    await assert_no_birth_date_in_events(db, births)
