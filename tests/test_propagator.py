"""The propagator against real HTTP processors: routing, retries, dead letters, receipts."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest

from consent.settings import Settings
from tests.conftest import admin, eventually
from tests.support import (
    RecordingProcessor,
    headers_of,
    read_topic,
    running_stack,
    serving,
)

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}


def trio(secrets: dict[str, str]) -> tuple[RecordingProcessor, ...]:
    return tuple(RecordingProcessor(n, secrets[n]) for n in ("email", "payment", "logistics"))


def configs(email, payment, logistics, overrides=None):  # type: ignore[no-untyped-def]
    return [
        email.config(
            "TEST_EMAIL_SECRET",
            ["marketing_email", "marketing_sms", "marketing_push"],
            **{**FAST, **(overrides or {}).get("email", {})},
        ),
        payment.config(
            "TEST_PAYMENT_SECRET",
            ["sale", "share", "third_party_sharing"],
            events=["consent.changed", "subject.updated", "subject.erasure_requested"],
            **{**FAST, **(overrides or {}).get("payment", {})},
        ),
        logistics.config(
            "TEST_LOGISTICS_SECRET",
            ["third_party_sharing"],
            events=["consent.changed", "subject.updated", "subject.erasure_requested"],
            **FAST,
        ),
    ]


async def patch(client, sid: str, purposes: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": purposes}
    )
    assert r.status_code == 200, r.text


@pytest.mark.timeout(120)
async def test_each_processor_gets_only_its_purposes(client, topics: Settings, processor_secrets):
    email, payment, logistics = trio(processor_secrets)
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics)),
    ):
        await patch(client, "m1", {"marketing_email": "granted", "sale": "denied"})
        await patch(client, "m1", {"third_party_sharing": "granted"})
        await patch(client, "m1", {"analytics": "granted"})  # nobody's purpose
        await eventually(
            lambda: (
                logistics.requests
                and payment.requests
                and payment.requests[-1].body["sequence"] == 2
            ),
            timeout=30,
        )
        await asyncio.sleep(0.5)
    assert {tuple(sorted(r.body["decisions"])) for r in email.requests} == {
        ("marketing_email", "marketing_push", "marketing_sms")
    }
    assert [r.body["sequence"] for r in email.requests] == [1]
    assert all(
        set(r.body["decisions"]) == {"sale", "share", "third_party_sharing"}
        for r in payment.requests
    )
    # sequence 1 may be superseded by 2 before it is sent: 2 carries the full decisions
    assert payment.requests[-1].body["decisions"] == {
        "sale": False,
        "share": False,
        "third_party_sharing": True,
    }
    assert [(r.body["sequence"], r.body["decisions"]) for r in logistics.requests] == [
        (2, {"third_party_sharing": True})
    ]
    assert all(r.signature_ok for p in (email, payment, logistics) for r in p.requests)
    assert email.requests[0].body["suppression"] == {
        "add": ["marketing_push", "marketing_sms"],
        "remove": ["marketing_email"],
    }


@pytest.mark.timeout(120)
async def test_retry_then_success_and_permanent_failure_is_dead(
    client, topics: Settings, processor_secrets, db
):
    email, payment, logistics = trio(processor_secrets)
    email_calls = {"n": 0}

    def flaky(_r):  # type: ignore[no-untyped-def]
        email_calls["n"] += 1
        return 500 if email_calls["n"] <= 3 else 200

    email.responder = flaky
    payment.responder = lambda _r: 400
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics)),
    ):
        await patch(client, "f1", {"marketing_email": "granted", "third_party_sharing": "granted"})
        await eventually(lambda: [r for r in email.requests if r.status == 200], timeout=30)
        await eventually(lambda: logistics.requests, timeout=10)
        rows = await eventually(lambda: _deliveries(db, "f1"), timeout=10)
    by_proc = {r["processor"]: r for r in rows}
    assert by_proc["email"]["status"] == "delivered" and by_proc["email"]["attempts"] == 4
    assert by_proc["logistics"]["status"] == "delivered" and by_proc["logistics"]["attempts"] == 1
    assert by_proc["payment"]["status"] == "dead" and by_proc["payment"]["attempts"] == 1
    assert "HTTP 400" in by_proc["payment"]["last_error"]
    assert len(payment.requests) == 1  # a permanent failure is not retried
    # logistics was not held back by email's retries
    assert logistics.requests[0].body["sequence"] == 1

    r = await client.get("/v1/subjects/f1/propagation", headers=admin())
    receipts = {p["processor"]: p for p in r.json()["processors"]}
    assert receipts["email"]["last_delivered_sequence"] == 1
    assert receipts["payment"]["status"] == "dead"
    assert "HTTP 400" in receipts["payment"]["last_error"]

    dead = await read_topic(topics, topics.deadletter_topic, min_count=1)
    body = orjson.loads(dead[0].value)
    assert body["processor"] == "payment" and body["subject_id"] == "f1"
    assert headers_of(dead[0])["ce_type"] == "delivery.dead"


async def _deliveries(db, sid):  # type: ignore[no-untyped-def]
    rows = await db.fetch(
        "SELECT processor, status, attempts, last_error FROM deliveries WHERE subject_id = $1", sid
    )
    done = [r for r in rows if r["status"] in ("delivered", "dead")]
    return rows if len(done) == 3 else None


@pytest.mark.timeout(180)
async def test_rapid_changes_while_down_end_with_latest_state(
    client, topics: Settings, processor_secrets, db
):
    email, payment, logistics = trio(processor_secrets)
    down = {"v": True}
    email.responder = lambda _r: 503 if down["v"] else 204
    async with (
        serving(email, payment, logistics),
        running_stack(
            topics, configs(email, payment, logistics, overrides={"email": {"max_attempts": 100}})
        ),
    ):
        for i in range(100):
            await patch(client, "rapid", {"marketing_email": "granted" if i % 2 == 0 else "denied"})
        await eventually(lambda: _intake_done(db), timeout=60)
        down["v"] = False
        await eventually(lambda: _delivered_up_to(db, "rapid", 100), timeout=60)
        await asyncio.sleep(0.3)
    ok = [r.body["sequence"] for r in email.requests if r.status == 204]
    assert ok[-1] == 100 and ok == sorted(ok), ok  # never an older state after a newer one
    assert email.requests[-1].body["decisions"]["marketing_email"] is False
    seqs = [r.body["sequence"] for r in email.requests]
    assert all(b >= a for a, b in itertools.pairwise(seqs)), seqs


async def _intake_done(db) -> bool:  # type: ignore[no-untyped-def]
    return await db.fetchval("SELECT count(*) FROM propagator_inbox") >= 100


async def _delivered_up_to(db, sid, seq) -> bool:  # type: ignore[no-untyped-def]
    return seq == await db.fetchval(
        "SELECT last_delivered_sequence FROM processor_receipts "
        "WHERE processor = 'email' AND subject_id = $1",
        sid,
    )


@pytest.mark.timeout(120)
async def test_erasure_reaches_every_processor_with_receipts(
    client, topics: Settings, processor_secrets
):
    email, payment, logistics = trio(processor_secrets)
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics)),
    ):
        r = await client.put(
            "/v1/subjects/gone",
            headers=admin(),
            json={"jurisdiction": "FR", "birth_date": "1990-05-01"},
        )
        assert r.status_code == 200
        r = await client.post("/v1/subjects/gone/erasure", headers=admin())
        assert r.status_code == 202, r.text
        request_id = r.json()["request_id"]
        status = await eventually(lambda: _erasure_completed(client), timeout=30)
    assert {x["processor"] for x in status["receipts"]} == {"email", "payment", "logistics"}
    assert all(x["status"] == "delivered" and x["acknowledged_at"] for x in status["receipts"])
    for p in (email, payment, logistics):
        erasures = [q for q in p.requests if q.body["type"] == "subject.erasure_requested"]
        assert [q.body["request_id"] for q in erasures] == [request_id]
        assert "decisions" not in erasures[0].body
    r = await client.get("/v1/subjects/gone/preferences", headers=admin())
    assert all(p["reason"] == "erased" for p in r.json()["purposes"].values())
    export = (await client.get("/v1/subjects/gone/export", headers=admin())).json()
    assert export["subject"]["birth_date"] is None
    assert all(e["evidence"] is None for e in export["history"])
    state = await read_topic(topics, topics.state_topic, min_count=2)
    assert [r.value for r in state if r.key == b"gone"][-1] is None  # tombstone


async def _erasure_completed(client):  # type: ignore[no-untyped-def]
    r = await client.get("/v1/subjects/gone/erasure", headers=admin())
    return r.json() if r.status_code == 200 and r.json()["status"] == "completed" else None


@pytest.mark.timeout(120)
async def test_processor_down_past_its_retry_budget_catches_up_by_itself(
    client, topics: Settings, processor_secrets, db
):
    email, payment, logistics = trio(processor_secrets)
    down = {"v": True}
    email.responder = lambda _r: 503 if down["v"] else 204
    overrides = {"email": {"max_attempts": 2, "recovery_probe_s": 0.5}}
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics, overrides=overrides)),
    ):
        for sid in ("x1", "x2"):
            await patch(client, sid, {"marketing_email": "granted"})
        await eventually(lambda: _dead_count(db, 2), timeout=30)  # the budget ran out
        down["v"] = False  # back up: nobody touches anything
        await eventually(lambda: _delivered_up_to(db, "x1", 1), timeout=30)
        await eventually(lambda: _delivered_up_to(db, "x2", 1), timeout=30)
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'dead'") == 0
    assert (
        await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'delivery.auto_redrive'")
        >= 1
    )


async def _dead_count(db, n) -> bool:  # type: ignore[no-untyped-def]
    return n == await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE status = 'dead' AND processor = 'email'"
    )


@pytest.mark.timeout(120)
async def test_profile_change_that_moves_decisions_reaches_processors(
    client, topics: Settings, processor_secrets
):
    email, payment, logistics = trio(processor_secrets)
    async with (
        serving(email, payment, logistics),
        running_stack(topics, configs(email, payment, logistics)),
    ):
        r = await client.put("/v1/subjects/mv", headers=admin(), json={"jurisdiction": "US-CA"})
        assert r.status_code == 200
        await eventually(lambda: payment.requests, timeout=30)
        assert payment.requests[-1].body["decisions"]["sale"] is True  # US opt-out default
        r = await client.put("/v1/subjects/mv", headers=admin(), json={"jurisdiction": "DE"})
        assert r.status_code == 200
        await eventually(lambda: len(payment.requests) >= 2, timeout=30)
    last = payment.requests[-1].body
    assert last["type"] == "subject.updated" and last["decisions"]["sale"] is False


async def test_workers_wake_on_notify_from_the_consent_service(settings: Settings, db) -> None:
    """Replays and redrives are committed by the consent service; ``NOTIFY deliveries``
    wakes the propagator's workers at once instead of at their next poll."""
    from propagator.service import Propagator, _FanOut

    woken = asyncio.Event()
    stop = asyncio.Event()
    prop = Propagator(settings, [])
    task = asyncio.create_task(prop._listen(stop, _FanOut([woken])))
    try:
        await asyncio.wait_for(woken.wait(), 10)  # set once listening (catch-up)
        woken.clear()
        await asyncio.sleep(0.2)
        assert not woken.is_set()
        await db.execute("SELECT pg_notify('deliveries', '')")
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
