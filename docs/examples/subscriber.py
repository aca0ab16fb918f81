"""A subscriber that keeps the latest consent decisions per subject.

Run it against the dev stack (the broker address is in `consentctl dev`'s banner):

    uv run python docs/examples/subscriber.py --bootstrap 127.0.0.1:PORT --group my-service

Delivery is at least once and a subject's events arrive in order on one partition, so a
consumer needs only two rules: drop an event whose ``ce_id`` it has applied, and drop an
event whose ``ce_subjectseq`` is not newer than what it holds for that subject.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer


@dataclass
class DecisionStore:
    """In a real service this is a table; commit it before committing Kafka offsets."""

    sequence: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, dict[str, bool]] = field(default_factory=dict)
    applied: int = 0
    skipped: int = 0

    def apply(self, headers: dict[str, str], value: bytes | None) -> bool:
        subject = headers.get("ce_subject", "")
        seq = int(headers.get("ce_subjectseq", "0") or 0)
        if headers.get("ce_type") == "policy.published" or value is None:
            return False
        if seq <= self.sequence.get(subject, 0):  # duplicate or stale: already reflected
            self.skipped += 1
            return False
        data = json.loads(value)
        if headers.get("ce_type") == "subject.erasure_requested":
            self.decisions.pop(subject, None)  # forget everything about the subject
        elif "decisions" in data:
            self.decisions[subject] = data["decisions"]  # the full set: no history needed
        self.sequence[subject] = seq
        self.applied += 1
        return True


async def consume(
    bootstrap: str,
    group: str,
    topic: str = "consent.events.v1",
    store: DecisionStore | None = None,
    max_idle_s: float | None = None,
) -> DecisionStore:
    store = store or DecisionStore()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    idle = 0.0
    try:
        while max_idle_s is None or idle < max_idle_s:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                idle += 0.5
                continue
            idle = 0.0
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    store.apply(headers, record.value)
            await consumer.commit()  # after the store is durable
    finally:
        await consumer.stop()
    return store


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", default="example-subscriber")
    parser.add_argument("--topic", default="consent.events.v1")
    args = parser.parse_args()
    result = asyncio.run(consume(args.bootstrap, args.group, args.topic))
    print(json.dumps(result.decisions, indent=2))
