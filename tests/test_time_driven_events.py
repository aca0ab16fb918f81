"""Every decision change is an event, time-driven ones included (API.md's additions).

The rule: once the scheduler has run at ``now``, the decisions the subject's last event
carried equal what the decision API answers at ``now``. Checked here with an injected clock
for material policy versions taking effect and for birthdays crossing every age threshold
the rules know, on real PostgreSQL, with two "replicas" racing.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from consent.adapters.repositories import SubjectRepository
from consent.domain.model import Actor
from consent.service import preferences, reconsent
from consent.service.age_transitions import record_age_transitions
from consent.service.context import WriteContext
from consent.service.decisions import decisions_for
from consent.service.reconsent import announce_reconsent
from consent.service.recorder import load_policies
from consent.service.unit_of_work import UnitOfWork
from consent.settings import Settings
from consentctl.ledger import verify_all
from consentctl.maintenance import rebuild
from tests.conftest import admin
from tests.test_minors_coming_of_age import Sessions, birthday_ahead, born


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app's own scheduler runs on the real clock; these tests pass ``now`` themselves."""
    return settings.model_copy(update={"scheduler_enabled": False})


async def last_event(db: asyncpg.Connection, sid: str) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT type, payload::text AS p FROM outbox WHERE aggregateid = $1 "
        "ORDER BY position DESC LIMIT 1",
        sid,
    )
    assert row is not None
    return {"type": row["type"], **json.loads(row["p"])}


async def answers(sessions: Sessions, sid: str, now: datetime) -> dict[str, bool]:
    async with sessions() as session:
        snapshot = await SubjectRepository(session).snapshot(sid)
        policies = await load_policies(UnitOfWork(session))
    return {k: d.allowed for k, d in decisions_for(snapshot, policies, now).items()}


async def assert_told(db: asyncpg.Connection, sessions: Sessions, sid: str, now: datetime) -> None:
    """The invariant: the last event says what the decision API answers now."""
    event = await last_event(db, sid)
    assert event["decisions"] == await answers(sessions, sid, now), (sid, event["type"])


async def put(client: Any, sid: str, jurisdiction: str, birth: str | None = None) -> None:
    body: dict[str, Any] = {"jurisdiction": jurisdiction}
    if birth:
        body["birth_date"] = birth
    r = await client.put(f"/v1/subjects/{sid}", headers=admin(), json=body)
    assert r.status_code == 200, r.text


async def grant(client: Any, sid: str, *purposes: str) -> None:
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences",
        headers=admin(),
        json={"purposes": dict.fromkeys(purposes, "granted")},
    )
    assert r.status_code == 200, r.text


async def publish(client: Any, version: str, effective_at: datetime, *purposes: str) -> None:
    r = await client.post(
        "/v1/policies",
        headers=admin(),
        json={
            "version": version,
            "effective_at": effective_at.isoformat(),
            "material": True,
            "affected_purposes": list(purposes),
        },
    )
    assert r.status_code == 201, r.text


async def count(db: asyncpg.Connection, sid: str, type_: str) -> tuple[int, int]:
    ledger = await db.fetchval(
        "SELECT count(*) FROM consent_ledger WHERE subject_id = $1 AND type = $2", sid, type_
    )
    outbox = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE aggregateid = $1 AND type = $2", sid, type_
    )
    return ledger, outbox


async def test_material_version_announces_reconsent_once_per_affected_subject(
    client, db, engines, monkeypatch, settings
):
    monkeypatch.setattr(reconsent, "PAGE", 3)  # several pages for ten subjects
    early = [f"rc-{i}" for i in range(10)]
    for sid in early:
        await put(client, sid, "DE")
        await grant(client, sid, "marketing_email", "analytics")
    await put(client, "rc-us", "US-CA")
    await grant(client, "rc-us", "marketing_email")
    await put(client, "rc-none", "DE")  # nothing granted: nothing to re-consent
    effective = datetime.now(UTC) + timedelta(days=3)
    await publish(client, "2027-01", effective, "marketing_email")
    await put(client, "rc-late", "DE")
    await grant(client, "rc-late", "marketing_email")  # recorded before: affected too
    sessions = engines[0]

    # before it takes effect: nothing is announced, the version is not done
    assert await announce_reconsent(sessions, effective - timedelta(seconds=1)) == 0
    before = await last_event(db, "rc-0")
    assert before["decisions"]["marketing_email"] is True

    # at effect, two replicas race, each twice: every affected subject is told exactly once
    told = await asyncio.gather(*(announce_reconsent(s, effective) for s in engines * 2))
    assert sum(told) == len(early) + 2  # rc-us and rc-late as well
    assert await announce_reconsent(sessions, effective + timedelta(hours=1)) == 0
    done = await db.fetchval(
        "SELECT reconsent_done_at FROM policy_versions WHERE version = '2027-01'"
    )
    assert done == effective

    for sid in [*early, "rc-late"]:
        assert await count(db, sid, "consent.reconsent_required") == (1, 1), sid
        event = await last_event(db, sid)
        assert event["type"] == "consent.reconsent_required"
        assert event["policy_version"] == "2027-01"
        assert event["changes"] == [
            {"purpose": "marketing_email", "from": "granted", "to": "granted"}
        ]
        assert event["decisions"]["marketing_email"] is False  # DE: opt-in default
        assert event["decisions"]["analytics"] is (sid != "rc-late")  # not affected
        assert event["changed_decisions"] == ["marketing_email"]
        assert event["actor"] == {"type": "system", "id": "reconsent-scheduler"}
        await assert_told(db, sessions, sid, effective)
    # an opt-out regime: the answer does not move, but the re-consent is still recorded
    us = await last_event(db, "rc-us")
    assert us["type"] == "consent.reconsent_required"
    assert us["decisions"]["marketing_email"] is True and us["changed_decisions"] == []
    assert await count(db, "rc-none", "consent.reconsent_required") == (0, 0)
    # recorded statuses are unchanged: reads say needs_reconsent
    r = await client.get("/v1/subjects/rc-0/preferences", headers=admin())
    assert r.json()["purposes"]["marketing_email"]["status"] == "granted"
    # (the API reads on the real clock, before the effective time: still explicit_grant)

    # a new grant after the version took effect is not announced again by a later version
    # of other purposes, and a second material version for the same purpose is announced
    await publish(client, "2027-02", effective + timedelta(days=1), "marketing_email")
    assert await announce_reconsent(sessions, effective + timedelta(days=1)) == len(early) + 2
    assert await count(db, "rc-0", "consent.reconsent_required") == (2, 2)
    second = await last_event(db, "rc-0")
    assert second["changed_decisions"] == []  # already told marketing_email is denied

    # the announcements restate statuses: the ledger still rebuilds the same projection
    assert await rebuild(settings.database_url, apply=False) == []
    _, problems = await verify_all(settings.database_url, show_progress=False)
    assert problems == []


async def test_reconsent_waits_for_the_relay_and_resumes(
    client, db, engines, settings, monkeypatch
):
    """A backlog over the limit pauses the job (within its time budget); the version is not
    marked done until every affected subject was told."""
    for i in range(4):
        await put(client, f"bk-{i}", "DE")
        await grant(client, f"bk-{i}", "marketing_email")
    effective = datetime.now(UTC) + timedelta(days=1)
    await publish(client, "2027-03", effective, "marketing_email")
    unpublished = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert unpublished >= 9  # no relay runs in this test

    throttled = settings.model_copy(
        update={"scheduler_max_outbox_backlog": 2, "scheduler_job_budget_s": 0.3}
    )
    monkeypatch.setattr(reconsent, "get_settings", lambda: throttled)
    assert await announce_reconsent(engines[0], effective) == 0
    done = "SELECT reconsent_done_at FROM policy_versions WHERE version = '2027-03'"
    assert await db.fetchval(done) is None
    await db.execute("UPDATE outbox SET published_at = now()")  # the relay caught up
    assert await announce_reconsent(engines[0], effective) == 4
    # its own four rows are over the limit again: it pauses before declaring the version done
    assert await db.fetchval(done) is None
    await db.execute("UPDATE outbox SET published_at = now()")
    assert await announce_reconsent(engines[0], effective) == 0
    assert await db.fetchval(done) == effective


async def test_a_version_already_in_effect_is_announced_at_once(client, db, engines, settings):
    """Published with an effective time in the past: the app's scheduler runs at once."""
    await put(client, "now-1", "DE")
    async with engines[0]() as session:  # granted an hour ago
        uow = UnitOfWork(session)
        ctx = WriteContext(
            "web", Actor("subject", "now-1"), now=datetime.now(UTC) - timedelta(hours=1)
        )
        await preferences.change_preferences(uow, "now-1", {"marketing_email": "granted"}, ctx)
        await uow.commit()
    # (the scheduler is disabled in this module's settings: run it in the app by hand)
    from consent.api.app import create_app

    live = settings.model_copy(update={"scheduler_enabled": True, "scheduler_interval_s": 3600})
    app = create_app(live)
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            await publish(c, "2026-01-past", datetime.now(UTC) - timedelta(minutes=1),
                          "marketing_email")  # fmt: skip
            for _ in range(100):
                if await count(db, "now-1", "consent.reconsent_required") == (1, 1):
                    break
                await asyncio.sleep(0.05)
    assert await count(db, "now-1", "consent.reconsent_required") == (1, 1)
    r = await client.get("/v1/subjects/now-1/decisions?purpose=marketing_email", headers=admin())
    assert r.json()["reason"] == "needs_reconsent"


# Every transition the age rules know, each where it happens by default:
# (subject, jurisdiction, age at the birthday, from, to, purposes whose answer changes)
TRANSITIONS = [
    ("t-de", "DE", 16, "child", "adult", []),  # minor_without_guardian → opt-in default
    ("t-tx", "US-TX", 13, "child", "adult",
     ["analytics", "cookies_advertising", "cookies_analytics", "cookies_functional",
      "marketing_email", "marketing_push", "personalization", "sale", "share",
      "third_party_sharing"]),
    ("t-ca13", "US-CA", 13, "child", "teen_opt_in",
     ["analytics", "cookies_advertising", "cookies_analytics", "cookies_functional",
      "marketing_email", "marketing_push", "personalization", "third_party_sharing"]),
    ("t-ca16", "US-CA", 16, "teen_opt_in", "adult", ["sale", "share"]),
    ("t-gb", "GB", 13, "child", "adult", []),
    ("t-br", "BR", 13, "child", "adult", []),
]  # fmt: skip


async def test_every_age_transition_is_an_event_on_the_birthday(client, db, engines):
    b_day = birthday_ahead(15)
    for sid, jurisdiction, age, *_ in TRANSITIONS:
        await put(client, sid, jurisdiction, born(age, b_day))
    sessions = engines[0]
    eve = b_day - timedelta(seconds=1)
    assert await record_age_transitions(sessions, eve) == 0
    for sid, *_ in TRANSITIONS:
        await assert_told(db, sessions, sid, eve)

    done = await asyncio.gather(*(record_age_transitions(s, b_day) for s in engines * 2))
    assert sum(done) == len(TRANSITIONS)
    assert await record_age_transitions(sessions, b_day + timedelta(days=1)) == 0
    for sid, _, _, was, now_status, changed in TRANSITIONS:
        assert await count(db, sid, "subject.age_status_changed") == (1, 1), sid
        event = await last_event(db, sid)
        assert event["type"] == "subject.age_status_changed"
        assert (event["from"], event["to"]) == (was, now_status), sid
        assert event["changed_decisions"] == changed, sid
        assert event["actor"] == {"type": "system", "id": "coming-of-age-scheduler"}
        assert "birth_date" not in json.dumps(event)
        await assert_told(db, sessions, sid, b_day)
        ledger = await db.fetchrow(
            "SELECT detail::text AS d, occurred_at FROM consent_ledger WHERE subject_id = $1 "
            "ORDER BY sequence DESC LIMIT 1",
            sid,
        )
        assert ledger["occurred_at"] == b_day
        assert json.loads(ledger["d"])["to"] == now_status

    # California's teen comes of age three years later: one more event, sale/share move
    adult_day = b_day.replace(year=b_day.year + 3)
    assert await record_age_transitions(sessions, adult_day) == 1
    event = await last_event(db, "t-ca13")
    assert (event["from"], event["to"], event["changed_decisions"]) == (
        "teen_opt_in",
        "adult",
        ["sale", "share"],
    )


async def test_a_write_between_birthday_and_job_carries_the_change(client, db, engines):
    """A change recorded after the birthday but before the job ran already carries the new
    decisions (and the new age status): the job then has nothing left to say."""
    b_day = birthday_ahead(3)
    await put(client, "w-1", "US-CA", born(16, b_day))  # a teen until the birthday
    assert (await last_event(db, "w-1"))["decisions"]["sale"] is False
    async with engines[0]() as session:
        uow = UnitOfWork(session)
        ctx = WriteContext("web", Actor("subject", "w-1"), now=b_day + timedelta(hours=1))
        await preferences.change_preferences(uow, "w-1", {"analytics": "denied"}, ctx)
        await uow.commit()
    event = await last_event(db, "w-1")
    assert event["decisions"]["sale"] is True
    assert event["changed_decisions"] == ["analytics", "sale", "share"]
    assert await record_age_transitions(engines[0], b_day + timedelta(hours=2)) == 0
    assert await count(db, "w-1", "subject.age_status_changed") == (0, 0)
