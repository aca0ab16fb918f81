"""Kafka intake: events → delivery intents, recorded before the offset is committed.

One transaction per polled batch writes the inbox rows (dedupe by event id) and the
deliveries; only after it commits are the offsets committed. A crash in between means
the batch is read again and the inbox drops what was already recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consent.adapters.kafka import client_kwargs
from consent.settings import Settings
from propagator.processors import ProcessorAdapter
from propagator.store import DeliveryStore

log = structlog.get_logger()


class Waker(Protocol):
    def set(self) -> None: ...


GROUP_ID = "consent-propagator"
WARMUP_TYPE = "dev.warmup"  # sent by `consentctl dev`, on its own topic, before it is ready


def _headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or ())}


def plan(
    adapters: list[ProcessorAdapter],
    event_id: str,
    event_type: str,
    data: dict[str, Any],
    occurred_at: datetime,
) -> list[dict[str, Any]]:
    """The deliveries one event needs: one per processor that wants it."""
    return [
        {
            "event_id": event_id,
            "event_type": event_type,
            "subject_id": data["subject_id"],
            "sequence": int(data.get("sequence") or 0),
            "processor": a.config.name,
            "max_attempts": a.config.max_attempts,
            "payload": a.body(event_id, event_type, data),
            "occurred_at": occurred_at,
            "replay": bool(data.get("replay", False)),
        }
        for a in adapters
        if a.relevant(event_type, data)
    ]


class Intake:
    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        adapters: list[ProcessorAdapter],
        wake: Waker,
        *,
        warmup: bool = False,
    ) -> None:
        self.settings, self.store, self.adapters, self.wake = settings, store, adapters, wake
        # the dev stack's private warm-up topic joins the subscription (same consumer group)
        self.topics = [settings.events_topic] + ([settings.warmup_topic] if warmup else [])
        self.recorded = 0
        self.ready = asyncio.Event()  # set once the consumer group has assigned partitions
        self.consumed = asyncio.Event()  # set once any record went through (warm-up)

    async def handle(self, records: list[ConsumerRecord[Any, Any]]) -> int:
        seen: list[tuple[str, str, int, int]] = []
        candidates: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            h = _headers(rec)
            event_id, event_type = h.get("ce_id"), h.get("ce_type")
            if event_type == WARMUP_TYPE:
                continue
            if not event_id or not event_type or rec.value is None:
                log.warning("intake_skipped_record", partition=rec.partition, offset=rec.offset)
                continue
            if event_id in candidates:  # published twice within one batch
                continue
            try:
                data = orjson.loads(rec.value)
                occurred = datetime.fromisoformat(h["ce_time"].replace("Z", "+00:00"))
                candidates[event_id] = plan(self.adapters, event_id, event_type, data, occurred)
            except (ValueError, KeyError, TypeError):
                log.warning("intake_bad_record", partition=rec.partition, offset=rec.offset)
                continue
            seen.append((event_id, rec.topic, rec.partition, rec.offset))
        planned = [d for eid, *_ in seen for d in candidates[eid]]
        async with self.store.pool.acquire() as conn:  # one statement: atomic on its own
            added = await self.store.record_intake(conn, seen, planned)
        if added:
            self.wake.set()
        self.recorded += added
        return added

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            group_id=self.settings.topic("") + GROUP_ID,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            max_poll_records=500,
            **client_kwargs(self.settings),
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                if not self.ready.is_set() and consumer.assignment():
                    self.ready.set()
                if not batch:
                    continue
                records = [r for recs in batch.values() for r in recs]
                self.consumed.set()
                while True:
                    try:
                        await self.handle(records)
                        break
                    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                        log.warning("intake_db_error", error=type(exc).__name__)
                        await asyncio.sleep(1)
                        if stop.is_set():
                            return
                offsets = {
                    TopicPartition(tp.topic, tp.partition): recs[-1].offset + 1
                    for tp, recs in batch.items()
                }
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # e.g. a rebalance: the batch comes again, deduped
                    log.warning("intake_commit_failed", error=type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
