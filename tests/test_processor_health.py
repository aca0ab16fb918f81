"""Processor health against a real HTTP processor, PostgreSQL and the broker: a processor
that is down is not hammered (the circuit breaker), one down for longer than its limit is
disabled and alerted on with every delivery kept, and once an operator enables it, it gets
everything it missed; a rate limit holds."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from consent.settings import Settings
from consent_common.settings import CommonSettings
from propagator import backlog
from propagator.api import create_api
from tests.conftest import PROPAGATOR_KEY, admin, eventually
from tests.support import Received, RecordingProcessor, running_stack, serving

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "max_attempts": 100}


async def _write(client: httpx.AsyncClient, sid: str, sale: str) -> None:
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": {"sale": sale}}
    )
    assert r.status_code == 200, r.text


async def _disabled(db, name: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        await db.fetchval(
            "SELECT disabled_at IS NOT NULL FROM propagator.processor_health WHERE processor=$1",
            name,
        )
    )


@pytest.mark.timeout(120)
async def test_a_processor_down_too_long_is_disabled_kept_and_caught_up_when_enabled(
    client: httpx.AsyncClient, topics: Settings, processor_secrets: dict[str, str], db
) -> None:
    payment = RecordingProcessor("payment", processor_secrets["payment"])
    state = {"down": True}
    payment.responder = lambda _r: 503 if state["down"] else 204
    config = payment.config(
        "TEST_PAYMENT_SECRET",
        ["sale", "share", "third_party_sharing"],
        concurrency=2,
        breaker_failures=3,
        breaker_open_s=0.3,
        breaker_max_open_s=1.0,
        disable_after_s=2.0,
        **FAST,
    )
    subjects = [f"h{i}" for i in range(20)]
    async with serving(payment), running_stack(topics, [config]):
        for sid in subjects:
            await _write(client, sid, "granted")
        start = time.monotonic()
        await eventually(lambda: _disabled(db, "payment"), timeout=30)
        failing_for = time.monotonic() - start
        hammered = len(payment.requests)
        # Twenty subjects retried every 50-200 ms would be hundreds of requests in the
        # seconds before the limit; the breaker lets one batch and then a probe through.
        assert hammered <= 30, f"{hammered} requests in {failing_for:.1f} s while down"

        # Disabled: the processor answers again, but nobody asks until an operator says so.
        state["down"] = False
        for sid in subjects[:5]:
            await _write(client, sid, "denied")  # changes while disabled are kept too

        async def kept() -> bool:
            queued = await db.fetchval(
                "SELECT count(*) FROM propagator.deliveries "
                "WHERE processor = 'payment' AND sequence = 2"
            )
            return bool(queued == 5)

        await eventually(kept, timeout=20)
        before = len(payment.requests)
        await asyncio.sleep(4.5)  # the workers re-read the health row every 2 s
        assert len(payment.requests) == before
        # Kept: every subject still has its newest delivery waiting (an older one may be
        # superseded by the newer, which carries the full decisions); none was delivered.
        waiting = await db.fetchval(
            "SELECT count(DISTINCT subject_id) FROM propagator.deliveries "
            "WHERE processor = 'payment' AND status IN ('pending', 'dead')"
        )
        delivered = await db.fetchval(
            "SELECT count(*) FROM propagator.deliveries "
            "WHERE processor = 'payment' AND status = 'delivered'"
        )
        assert (waiting, delivered) == (len(subjects), 0)

        prop_api = create_api(
            CommonSettings(
                database_url=topics.database_url, propagator_api_key=SecretStr(PROPAGATOR_KEY)
            )
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=prop_api), base_url="http://prop"
        ) as api:
            key = {"X-API-Key": PROPAGATOR_KEY}
            listed = (await api.get("/v1/processors", headers=key)).json()["items"]
            assert [p["processor"] for p in listed if p["disabled"]] == ["payment"]
            assert "failing without a success" in listed[0]["disabled_reason"]
            r = await api.post("/v1/processors/payment/enable", headers=key)
            assert r.status_code == 200, r.text
            again = await api.post("/v1/processors/payment/enable", headers=key)
            assert again.status_code == 409
            if prop_api.state.pool is not None:
                await prop_api.state.pool.close()

        expected = {sid: (sid not in subjects[:5]) for sid in subjects}

        def caught_up() -> bool:
            last: dict[str, Received] = {}
            for req in payment.applied():
                sid = req.body["subject_id"]
                if sid not in last or req.body["sequence"] >= last[sid].body["sequence"]:
                    last[sid] = req
            return {s: r.body["decisions"]["sale"] for s, r in last.items()} == expected

        await eventually(caught_up, timeout=30)
    audit = await db.fetch(
        "SELECT payload->>'action' AS action FROM propagator.propagator_outbox "
        "WHERE type = 'audit.recorded' ORDER BY position"
    )
    assert [a["action"] for a in audit] == ["processor.disabled", "processor.enabled"]


@pytest.mark.timeout(60)
async def test_the_disabled_gauge_follows_the_health_row(db_url: str, db) -> None:
    import asyncpg

    from consent_common.db import plain_url
    from propagator.db import SERVER_SETTINGS

    await db.execute(
        "INSERT INTO propagator.processor_health (processor, disabled_at) VALUES ('email', now())"
    )
    pool = await asyncpg.create_pool(
        plain_url(db_url), min_size=1, max_size=1, server_settings=SERVER_SETTINGS
    )
    try:
        await backlog.sample(pool, ["email", "payment"])
        assert REGISTRY.get_sample_value("consent_processor_disabled", {"processor": "email"}) == 1
        assert (
            REGISTRY.get_sample_value("consent_processor_disabled", {"processor": "payment"}) == 0
        )
        await db.execute("UPDATE propagator.processor_health SET disabled_at = NULL")
        await backlog.sample(pool, ["email", "payment"])
        assert REGISTRY.get_sample_value("consent_processor_disabled", {"processor": "email"}) == 0
    finally:
        await pool.close()


@pytest.mark.timeout(120)
async def test_a_rate_limit_holds_in_every_second(
    client: httpx.AsyncClient, topics: Settings, processor_secrets: dict[str, str]
) -> None:
    payment = RecordingProcessor("payment", processor_secrets["payment"])
    arrivals: list[float] = []

    def respond(_r: Received) -> int:
        arrivals.append(time.monotonic())
        return 204

    payment.responder = respond
    rate = 20.0
    config = payment.config(
        "TEST_PAYMENT_SECRET",
        ["sale", "share", "third_party_sharing"],
        rate_limit_per_s=rate,
        **FAST,
    )
    async with serving(payment), running_stack(topics, [config]):
        for i in range(50):
            await _write(client, f"r{i}", "granted")
        await eventually(lambda: len(payment.applied()) >= 50, timeout=60)
    arrivals.sort()
    burst = max(1.0, rate / 10)
    worst = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert worst <= rate + burst + 1, f"{worst} requests in one second at {rate}/s"
