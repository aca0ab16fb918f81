"""The subscriber helper on the real broker and stack: in order, deduplicated, stale dropped,
handler failures retried, rejected and undecodable records parked, offsets committed."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consent.settings import Settings
from consent_client import DecisionEvent, Delivery, MemoryStore, Reject, Subscriber
from consent_common.kafka import client_kwargs
from tests.conftest import admin
from tests.support import headers_of, read_topic, running_stack


async def write(client, sid: str, purposes: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    r = await client.patch(
        f"/v1/subjects/{sid}/preferences", headers=admin(), json={"purposes": purposes}
    )
    assert r.status_code == 200, r.text


@pytest.mark.timeout(120)
async def test_subscriber_applies_each_change_once_in_order(client, topics: Settings) -> None:  # type: ignore[no-untyped-def]
    async with running_stack(topics):
        await write(client, "s1", {"analytics": "granted"})
        await write(client, "s1", {"analytics": "denied"})
        await write(client, "s2", {"sale": "denied"})
        await write(client, "bad", {"sale": "denied"})
        r = await client.post("/v1/subjects/s2/erasure", headers=admin())
        assert r.status_code == 202
        published = await read_topic(topics, topics.events_topic, min_count=5)
    producer = AIOKafkaProducer(**client_kwargs(topics))
    await producer.start()
    try:
        first = published[0]
        # a redelivery of the first event, an event type from the future, an undecodable record
        await producer.send_and_wait(
            topics.events_topic, key=first.key, value=first.value, headers=list(first.headers)
        )
        future = [
            (k, v.encode()) for k, v in headers_of(first).items() if k not in ("ce_type", "ce_id")
        ]
        future += [("ce_type", b"subject.teleported"), ("ce_id", b"future-1")]
        await producer.send_and_wait(topics.events_topic, key=b"s1", value=b"{}", headers=future)
        await producer.send_and_wait(
            topics.events_topic,
            key=b"s1",
            value=b"\xff not json",
            headers=[("ce_specversion", b"1.0")],
        )
    finally:
        await producer.stop()

    seen: list[tuple[str, int, str]] = []
    failures = {"s2": 1}  # s2's first event fails once: the partition is retried

    def handle(d: Delivery) -> None:
        e = d.event
        assert isinstance(e, DecisionEvent) or e.TYPE == "subject.erasure_requested"
        subject = getattr(e, "subject_id", "")
        if subject == "bad":
            raise Reject("no such customer here")
        if failures.get(subject):
            failures[subject] -= 1
            raise RuntimeError("database busy")
        seen.append((subject, getattr(e, "sequence", 0), e.TYPE))

    store = MemoryStore()
    sub = Subscriber(
        topics.kafka_bootstrap or "",
        "lib-group",
        topic=topics.events_topic,
        store=store,
        retry_backoff_s=0.05,
    )
    await sub.run(handle, max_idle_s=1)

    assert [s for s in seen if s[0] == "s1"] == [
        ("s1", 1, "consent.changed"),
        ("s1", 2, "consent.changed"),
    ]
    assert [s for s in seen if s[0] == "s2"] == [
        ("s2", 1, "consent.changed"),
        ("s2", 2, "subject.erasure_requested"),
    ]
    assert sub.stats.handled == 4 and sub.stats.retries == 1
    assert sub.stats.duplicates + sub.stats.stale == 1 and sub.stats.unknown_types == 1
    reasons = sorted(p.reason for p in store.parked)
    assert len(reasons) == 2
    assert reasons[0].startswith("not a CloudEvent") and "rejected by handler" in reasons[1]
    assert store.sequences == {"s1": 2, "s2": 2, "bad": 1}

    # every offset was committed, past the parked records too
    probe = AIOKafkaConsumer(
        group_id="lib-group", enable_auto_commit=False, **client_kwargs(topics)
    )
    await probe.start()
    try:
        while not probe.partitions_for_topic(topics.events_topic):
            await probe._client.force_metadata_update()
        tps = [
            TopicPartition(topics.events_topic, p)
            for p in probe.partitions_for_topic(topics.events_topic) or ()
        ]
        ends = await probe.end_offsets(tps)
        assert tps and {tp: await probe.committed(tp) or 0 for tp in tps} == ends
    finally:
        await probe.stop()


async def test_dead_letters_and_policies_are_deduplicated_by_id_only() -> None:
    """Two processors' dead letters of one event share subject and sequence: both count."""
    from types import SimpleNamespace

    def record(ce_id: str, ce_type: str, value: dict, offset: int) -> SimpleNamespace:  # type: ignore[type-arg]
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", ce_id.encode()),
            ("ce_source", b"/t"),
            ("ce_type", ce_type.encode()),
            ("ce_subject", b"u-1"),
            ("ce_subjectseq", f"{3:020d}".encode()),
        ]
        return SimpleNamespace(
            topic="dl",
            partition=0,
            offset=offset,
            key=b"u-1",
            headers=headers,
            value=json.dumps(value).encode(),
        )

    dead = {
        "delivery_id": "00000000-0000-0000-0000-000000000001",
        "event_id": "e",
        "event_type": "consent.changed",
        "subject_id": "u-1",
        "sequence": 3,
        "processor": "email",
        "attempts": 8,
        "last_error": "HTTP 500",
    }
    seen: list[str] = []
    sub = Subscriber("unused:9092", "g", topic="dl")
    for i, (ce_id, proc) in enumerate([("d1", "email"), ("d2", "payment"), ("d1", "email")]):
        await sub._one(
            lambda d: seen.append(d.envelope.id),
            record(ce_id, "delivery.dead", dead | {"processor": proc}, i),
        )
    assert seen == ["d1", "d2"] and sub.stats.duplicates == 1 and sub.stats.stale == 0
