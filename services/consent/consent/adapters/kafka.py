"""Kafka plumbing: client settings, topic creation, CloudEvents binary-mode records."""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from consent.settings import Settings
from consent_common.kafka import client_kwargs


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    # Plain producer: ordering and no-loss come from the outbox, not Kafka transactions.
    kw = {
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 2,
        "request_timeout_ms": 10000,
        **overrides,
    }
    return AIOKafkaProducer(**client_kwargs(settings), **kw)


def topic_specs(settings: Settings, partitions: int = 6) -> list[NewTopic]:
    return [
        NewTopic(settings.events_topic, partitions, 1),
        NewTopic(settings.state_topic, partitions, 1, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(settings.deadletter_topic, 1, 1),
        # between the two services: receipts and audit entries (propagator → consent), and
        # replays restricted to processors (consent → propagator); never read by others
        NewTopic(settings.receipts_topic, partitions, 1),
        NewTopic(settings.replays_topic, partitions, 1),
        # signed checkpoints of the transparency log, keyed by tree size; never compacted
        # (consistency proofs need the history) and kept forever
        NewTopic(settings.checkpoints_topic, 1, 1, topic_configs={"retention.ms": "-1"}),
    ]


async def ensure_topics(
    settings: Settings, partitions: int = 6, *, warmup: bool = False
) -> list[str]:
    """Create the three topics if missing (and the dev stack's private warm-up topic when
    ``warmup``); return the names created."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = topic_specs(settings, partitions)
        if warmup:
            specs.append(NewTopic(settings.warmup_topic, 1, 1))
        missing = [t for t in specs if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
