"""Broker produce → consume latency, the ceiling of the end-to-end row (run by bench.load)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from bench.load import clock, percentiles


async def kafka(spec: dict[str, Any]) -> dict[str, Any]:
    """Produce at a fixed rate (acks=all, linger 2 ms: the relay's producer settings) and
    consume with fetch_max_wait 20 ms (the propagator's intake setting)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bs, topic = spec["bootstrap"], spec["topic"]
    rate, duration = float(spec["rate"]), float(spec["duration"])
    n = int(rate * duration)
    admin = AIOKafkaAdminClient(bootstrap_servers=bs)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bs, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        for _ in range(100):
            if parts:
                break
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            await asyncio.sleep(0.05)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        lat: list[float] = []
        t0 = clock() + 0.1
        deadline = t0 + duration + 10

        async def consume() -> None:
            while len(lat) < n and clock() < deadline:
                batch = await consumer.getmany(timeout_ms=100)
                now = clock()
                for recs in batch.values():
                    lat.extend(now - struct.unpack("d", r.value)[0] for r in recs)

        task = asyncio.create_task(consume())
        for i in range(n):
            at = t0 + i / rate
            delay = at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, key=str(i).encode(), value=struct.pack("d", at))
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(task, timeout=max(1.0, deadline - clock() + 1))
    finally:
        await producer.stop()
        await consumer.stop()
    return {"mode": "kafka", "offered_rate": rate, "sent": n, "ok": len(lat)} | percentiles(lat, n)
