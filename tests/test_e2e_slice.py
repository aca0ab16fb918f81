"""The thin slice end to end: HTTP PATCH → PostgreSQL → outbox relay → Kafka → propagator
→ a signed webhook at a real HTTP processor."""

from __future__ import annotations

import orjson

from consent.settings import Settings
from tests.conftest import admin, eventually
from tests.support import RecordingProcessor, headers_of, read_topic, running_stack, serving


async def test_patch_reaches_processor_and_kafka(client, topics: Settings, processor_secrets):
    settings = topics
    email = RecordingProcessor("email", processor_secrets["email"])
    payment = RecordingProcessor("payment", processor_secrets["payment"])
    configs = [
        email.config("TEST_EMAIL_SECRET", ["marketing_email", "marketing_sms"]),
        payment.config("TEST_PAYMENT_SECRET", ["sale", "share"]),
    ]
    async with serving(email, payment), running_stack(settings, configs):
        r = await client.put("/v1/subjects/u-e2e", json={"jurisdiction": "US-CA"}, headers=admin())
        assert r.status_code == 200, r.text
        r = await client.patch(
            "/v1/subjects/u-e2e/preferences",
            json={"purposes": {"marketing_email": "granted"}, "context": {"channel": "web"}},
            headers=admin(),
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == '"2"'

        await eventually(
            lambda: [q for q in email.requests if q.body.get("sequence") == 2], timeout=20
        )
        hook = next(q for q in email.requests if q.body["sequence"] == 2)
        assert hook.signature_ok
        assert hook.headers["idempotency-key"] == hook.headers["webhook-id"]
        assert hook.headers["x-consent-event-type"] == "consent.changed"
        assert hook.body["decisions"] == {"marketing_email": True, "marketing_sms": False}
        assert hook.body["subject_id"] == "u-e2e"
        assert hook.body["replay"] is False
        # payment's purposes did not change at sequence 2: it is not sent that event
        assert all(q.body["sequence"] != 2 for q in payment.requests)

    records = await read_topic(settings, settings.events_topic, min_count=2)
    mine = [r for r in records if r.key == b"u-e2e"]
    assert len(mine) == 2
    changed = mine[-1]
    h = headers_of(changed)
    assert h["ce_specversion"] == "1.0"
    assert h["ce_type"] == "consent.changed"
    assert h["ce_subject"] == "u-e2e"
    assert h["ce_subjectseq"] == "00000000000000000002"
    assert h["ce_id"] == hook.headers["webhook-id"]
    assert h["content-type"] == "application/json"
    assert h["ce_source"] and h["ce_time"].endswith("Z")
    data = orjson.loads(changed.value)
    assert data["sequence"] == 2
    assert data["changes"] == [{"purpose": "marketing_email", "from": "unset", "to": "granted"}]
    assert data["decisions"]["marketing_email"] is True
    assert data["decisions"]["sale"] is True  # US-CA: opt-out regime, not opted out
    assert data["channel"] == "web"


async def test_a_material_policy_change_reaches_the_processor_and_the_state_topic(
    client, topics: Settings, processor_secrets
):
    """Issue 13's first scenario: a grant, then a material version taking effect a few
    seconds later; the processor ends up holding what the decision API answers, within the
    scheduler interval plus delivery time, and so does consent.state.v1."""
    from datetime import UTC, datetime, timedelta

    settings = topics
    email = RecordingProcessor("email", processor_secrets["email"])
    config = email.config("TEST_EMAIL_SECRET", ["marketing_email"])
    async with serving(email), running_stack(settings, [config]):
        await client.put("/v1/subjects/rc-e2e", json={"jurisdiction": "DE"}, headers=admin())
        r = await client.patch(
            "/v1/subjects/rc-e2e/preferences",
            json={"purposes": {"marketing_email": "granted"}},
            headers=admin(),
        )
        assert r.status_code == 200, r.text
        await eventually(
            lambda: [q for q in email.requests if q.body["decisions"] == {"marketing_email": True}],
            timeout=30,
        )
        effective = datetime.now(UTC) + timedelta(seconds=2)
        r = await client.post(
            "/v1/policies",
            headers=admin(),
            json={"version": "2027-e2e", "effective_at": effective.isoformat(),
                  "material": True, "affected_purposes": ["marketing_email"]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        hook = await eventually(
            lambda: [q for q in email.requests
                     if q.headers["x-consent-event-type"] == "consent.reconsent_required"],
            timeout=30,
        )  # fmt: skip
        assert hook[0].body["decisions"] == {"marketing_email": False}
        assert hook[0].signature_ok
        r = await client.get(
            "/v1/subjects/rc-e2e/decisions?purpose=marketing_email", headers=admin()
        )
        assert r.json() == {**r.json(), "allowed": False, "reason": "needs_reconsent"}
    state = [
        rec
        for rec in await read_topic(settings, settings.state_topic, min_count=3)
        if rec.key == b"rc-e2e"
    ]
    assert orjson.loads(state[-1].value)["decisions"]["marketing_email"] is False
