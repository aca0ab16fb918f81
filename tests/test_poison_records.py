"""No record stops the flow (API.md's additions): on the real broker, records intake cannot
use are parked with their offsets committed, unknown types are skipped, and changes made
after them are still delivered. Operators list, retry and drop parked records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consent.settings import Settings
from consent_common.kafka import client_kwargs, cloudevent_headers
from propagator.intake import GROUP_ID
from propagator.parking import headers_json
from tests.conftest import admin, eventually
from tests.support import RecordingProcessor, running_stack, serving


def ce(type_: str = "consent.changed", **drop: bool) -> list[tuple[str, bytes]]:
    h = cloudevent_headers(
        event_id=str(uuid.uuid4()),
        source="test",
        type_=type_,
        time=datetime.now(UTC),
        subject="poison",
        sequence=1,
    )
    return [(k, v) for k, v in h if not drop.get(k)]


def valid_data(subject_id: str, sequence: int) -> dict[str, object]:
    return {
        "subject_id": subject_id,
        "sequence": sequence,
        "changes": [{"purpose": "marketing_email", "from": "unset", "to": "granted"}],
        "decisions": {"marketing_email": True},
        "changed_decisions": ["marketing_email"],
        "occurred_at": "2026-11-29T10:00:00Z",
        "replay": False,
    }


# (headers, value, why it cannot be used)
POISON = [
    (ce(), b"[]", "value is not a JSON object"),
    (ce(), b"null", "value is not a JSON object"),
    (ce(), None, "no value"),
    ([*ce(), ("x-note", b"\xff\xfe")], orjson.dumps(valid_data("p-1", 1)), "header is not UTF-8"),
    (ce(ce_id=True), orjson.dumps(valid_data("p-2", 1)), "no ce_id header"),
    (ce(), orjson.dumps({"sequence": 1, "decisions": {}}), "missing or invalid field"),
    (ce(), orjson.dumps(valid_data("p-\u0000-3", 1)), "rejected by the database"),
]


async def test_poison_records_are_parked_and_the_flow_goes_on(
    client, topics: Settings, processor_secrets
):
    settings = topics
    email = RecordingProcessor("email", processor_secrets["email"])
    config = email.config("TEST_EMAIL_SECRET", ["marketing_email"])
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    async with serving(email), running_stack(settings, [config]) as stack:
        assert stack.propagator is not None
        await eventually(stack.propagator.ready.is_set, timeout=30)
        try:
            for headers, value, _ in POISON:
                await producer.send_and_wait(
                    settings.events_topic, key=b"poison", value=value, headers=headers
                )
            # a type from a newer producer, with fields we do not know: skipped, not parked
            await producer.send_and_wait(
                settings.events_topic,
                key=b"poison",
                value=b'{"anything": [1, 2]}',
                headers=ce("consent.from_the_future"),
            )
        finally:
            await producer.stop()

        # a change made after the poison is still delivered
        r = await client.put("/v1/subjects/after-1", headers=admin(), json={"jurisdiction": "DE"})
        r = await client.patch(
            "/v1/subjects/after-1/preferences",
            headers=admin(),
            json={"purposes": {"marketing_email": "granted"}},
        )
        assert r.status_code == 200, r.text
        await eventually(
            lambda: [q for q in email.requests if q.body["subject_id"] == "after-1"
                     and q.body["decisions"] == {"marketing_email": True}],
            timeout=30,
        )  # fmt: skip

        r = await client.get("/v1/admin/parked", headers=admin())
        assert r.status_code == 200, r.text
        parked = r.json()["items"]
        assert len(parked) == len(POISON), parked
        for item, (_, _, why) in zip(parked, POISON, strict=True):
            assert why in item["reason"], (item, why)
            assert item["topic"] == settings.events_topic
        assert r.json()["next_cursor"] is None
        # nobody received anything from a poison record
        assert {q.body["subject_id"] for q in email.requests} == {"after-1"}

        # the offsets are committed past every poison record
        # (a consumer of the group that only asks, never joins: no rebalance)
        asker = AIOKafkaConsumer(group_id=settings.topic("") + GROUP_ID, **client_kwargs(settings))
        await asker.start()
        try:
            offsets = {
                TopicPartition(settings.events_topic, item["partition"]): None for item in parked
            }
            for tp in offsets:
                offsets[tp] = await asker.committed(tp)
        finally:
            await asker.stop()
        committed = {tp.partition: offset for tp, offset in offsets.items()}
        for item in parked:
            assert (committed[item["partition"]] or 0) > item["offset"], (item, committed)

        metrics = (await client.get("/metrics")).text
        assert f'consent_parked{{where="intake"}} {float(len(POISON))}' in metrics
        assert "consent_intake_parked_total" in metrics
        assert 'consent_intake_skipped_total{reason="unknown_type"}' in metrics

        # retry a record that is still unusable: it stays, one attempt more
        first = parked[0]["id"]
        r = await client.post(f"/v1/admin/parked/{first}/retry", headers=admin())
        assert r.status_code == 202 and r.json()["status"] == "retry_requested"

        async def attempted() -> bool:
            got = (await client.get("/v1/admin/parked", headers=admin())).json()["items"]
            return any(i["id"] == first and i["attempts"] == 1 for i in got)

        await eventually(attempted, timeout=10)

        # a record parked by an older version that intake can use now: delivered, then gone
        db_id = await _park_valid_record(settings, "revived-1")
        r = await client.post(f"/v1/admin/parked/{db_id}/retry", headers=admin())
        assert r.status_code == 202
        await eventually(
            lambda: [q for q in email.requests if q.body["subject_id"] == "revived-1"],
            timeout=10,
        )

        async def gone() -> bool:
            got = (await client.get("/v1/admin/parked", headers=admin())).json()["items"]
            return all(i["id"] != db_id for i in got)

        await eventually(gone, timeout=10)

        # drop: audited, then 404
        r = await client.delete(f"/v1/admin/parked/{first}", headers=admin())
        assert r.status_code == 204
        r = await client.delete(f"/v1/admin/parked/{first}", headers=admin())
        assert r.status_code == 404
        audit = (await client.get("/v1/admin/audit", headers=admin())).json()["items"]
        assert {"parked.drop", "parked.retry"} <= {a["action"] for a in audit}


async def _park_valid_record(settings: Settings, subject_id: str) -> int:
    import asyncpg

    from consent_common.db import plain_url

    conn = await asyncpg.connect(
        plain_url(settings.database_url or ""), server_settings={"search_path": "propagator"}
    )
    try:
        headers = ce()
        return int(
            await conn.fetchval(
                'INSERT INTO parked_records (topic, partition, "offset", key, value, headers, '
                "reason) VALUES ($1, 0, 999999, $2, $3, $4::jsonb, 'parked by an older version') "
                "RETURNING id",
                settings.events_topic,
                subject_id.encode(),
                orjson.dumps(valid_data(subject_id, 5)),
                headers_json(headers),
            )
        )
    finally:
        await conn.close()


async def test_parked_endpoints_need_admin_and_valid_ids(client):
    assert (await client.get("/v1/admin/parked")).status_code == 401
    for bad in ("0", "-1", "abc", "99999999999999999999999"):
        r = await client.post(f"/v1/admin/parked/{bad}/retry", headers=admin())
        assert r.status_code == 422, (bad, r.text)
    r = await client.get("/v1/admin/parked?cursor=99999999999999999999999", headers=admin())
    assert r.status_code == 422
    assert (await client.post("/v1/admin/parked/42/retry", headers=admin())).status_code == 404
