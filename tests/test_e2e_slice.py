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
