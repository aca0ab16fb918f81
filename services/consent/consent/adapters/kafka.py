"""Kafka plumbing: client settings, topic creation, CloudEvents binary-mode records."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from consent.settings import Settings
from consent_common.kafka import client_kwargs
from consent_common.timefmt import rfc3339

SPEC_VERSION = "1.0"


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


def cloudevent_headers(
    *,
    event_id: str,
    source: str,
    type_: str,
    time: datetime,
    subject: str,
    sequence: int | None,
    extra: Mapping[str, str] | None = None,
) -> list[tuple[str, bytes]]:
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type_.encode()),
        ("ce_time", rfc3339(time).encode()),
        ("ce_subject", subject.encode()),
    ]
    if sequence is not None:
        headers.append(("ce_subjectseq", f"{sequence:020d}".encode()))
    headers.append(("content-type", b"application/json"))
    for k, v in (extra or {}).items():
        headers.append((k, v.encode()))
    return headers


def encode(data: Any) -> bytes:
    return orjson.dumps(data)
