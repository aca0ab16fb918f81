"""Kafka intake: events → delivery intents, recorded before the offset is committed.

One unit of work (``unit_of_work.py``) per polled batch writes the inbox rows (dedupe by
event id), the deliveries and the parked records (``repositories/inbox.py``,
``repositories/parked.py``); only after it commits are the offsets committed. A crash in
between means the batch is read again and the inbox drops what was already recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from consent_common import tracing
from consent_common.kafka import client_kwargs
from consent_common.settings import CommonSettings
from propagator import metrics
from propagator.decode import Park, Skip, Usable, decode
from propagator.intents import DeliveryIntent
from propagator.parking import Headers, ParkedRecord
from propagator.processors import ProcessorAdapter
from propagator.unit_of_work import unit_of_work

log = structlog.get_logger()


class Waker(Protocol):
    def set(self) -> None: ...


GROUP_ID = "consent-propagator"
TARGETS_HEADER = "consent_processors"  # on consent.replays.v1: the processors named
# errors about the data itself: retrying the same batch would fail forever
REJECTED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def plan(
    adapters: list[ProcessorAdapter],
    event_id: str,
    event_type: str,
    data: dict[str, Any],
    occurred_at: datetime,
    only: frozenset[str] | None = None,
) -> list[DeliveryIntent]:
    """The deliveries one event needs: one per processor that wants it, or, for a replay
    restricted to processors (``only``), one per processor named."""
    return [
        DeliveryIntent(
            event_id=event_id,
            event_type=event_type,
            subject_id=data["subject_id"],
            sequence=int(data.get("sequence") or 0),
            processor=a.config.name,
            max_attempts=a.config.max_attempts,
            payload=a.body(event_id, event_type, data),
            occurred_at=occurred_at,
            replay=bool(data.get("replay", False)),
        )
        for a in adapters
        if (a.config.name in only if only is not None else a.relevant(event_type, data))
    ]


def replay_targets(rec: ConsumerRecord[Any, Any]) -> frozenset[str]:
    """The processors a record of the private replays topic is for."""
    return targets_in(rec.headers or ())


def targets_in(headers: Headers) -> frozenset[str]:
    """The processors a replays-topic record's headers name (none: an empty set)."""
    for key, value in headers:
        if key == TARGETS_HEADER and value:
            return frozenset(n for n in bytes(value).decode(errors="replace").split(",") if n)
    return frozenset()


def traceparent_of(rec: ConsumerRecord[Any, Any]) -> str | None:
    """The CloudEvents distributed-tracing extension of a record, if it carries one."""
    for key, value in rec.headers or ():
        if key == tracing.CE_HEADER and value:
            return bytes(value).decode("ascii", errors="replace")[:128]
    return None


class Intake:
    def __init__(
        self,
        settings: CommonSettings,
        pool: asyncpg.Pool,
        adapters: list[ProcessorAdapter],
        wake: Waker,
        *,
        warmup: bool = False,
    ) -> None:
        self.settings, self.pool, self.adapters, self.wake = settings, pool, adapters, wake
        # the private replays topic, and the dev stack's private warm-up topic, join the
        # subscription (same consumer group)
        self.topics = [settings.events_topic, settings.replays_topic] + (
            [settings.warmup_topic] if warmup else []
        )
        self.recorded = 0
        self.ready = asyncio.Event()  # set once the consumer group has assigned partitions
        self.consumed = asyncio.Event()  # set once any record went through (warm-up)

    async def handle(self, records: list[ConsumerRecord[Any, Any]]) -> int:
        """Record the batch's deliveries and park what cannot be used, in one transaction;
        the caller commits the offsets only after it. Returns the pending deliveries added."""
        seen: list[tuple[str, str, int, int]] = []
        candidates: dict[str, list[DeliveryIntent]] = {}
        parked: list[ParkedRecord] = []
        for rec in records:
            decoded = decode(rec.headers, rec.value)
            if isinstance(decoded, Skip):
                metrics.INTAKE_SKIPPED.labels(decoded.reason).inc()
                continue
            if isinstance(decoded, Park):
                parked.append(_parked(rec, decoded.reason))
                continue
            if decoded.event_id in candidates:  # published twice within one batch
                continue
            with tracing.span(
                "consent.intake",
                traceparent_of(rec),
                SpanKind.CONSUMER,
                {"messaging.system": "kafka", "cloudevents.event_type": decoded.event_type},
            ):
                deliveries = plan(
                    self.adapters,
                    decoded.event_id,
                    decoded.event_type,
                    decoded.data,
                    decoded.occurred_at,
                    replay_targets(rec) if rec.topic == self.settings.replays_topic else None,
                )
                traceparent = tracing.current_traceparent() or traceparent_of(rec)
            # each webhook attempt continues this trace
            candidates[decoded.event_id] = [replace(d, traceparent=traceparent) for d in deliveries]
            seen.append((decoded.event_id, rec.topic, rec.partition, rec.offset))
        planned = [d for eid, *_ in seen for d in candidates[eid]]
        async with unit_of_work(self.pool) as uow:
            added = await uow.inbox.record_intake(seen, planned)
            await uow.parked.park(parked)
        for p in parked:
            metrics.INTAKE_PARKED.labels(p.reason.split(":")[0]).inc()
            log.warning(
                "intake_parked_record",
                topic=p.topic,
                partition=p.partition,
                offset=p.offset,
                reason=p.reason,
            )
        if added:
            self.wake.set()
        self.recorded += added
        return added

    async def handle_one_by_one(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """After the database refused a batch: each record alone, so only the one it refuses
        is parked (with the refusal's SQLSTATE, never its text, which may quote the value)."""
        for rec in records:
            try:
                await self.handle([rec])
            except REJECTED as exc:
                reason = f"rejected by the database: {exc.sqlstate}"
                async with unit_of_work(self.pool, atomic=False) as uow:  # one statement
                    await uow.parked.park([_parked(rec, reason)])
                metrics.INTAKE_PARKED.labels("rejected by the database").inc()
                log.warning(
                    "intake_parked_record",
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    reason="rejected by the database",
                    sqlstate=exc.sqlstate,
                )

    async def retry_parked(self, limit: int = 100) -> tuple[int, int]:
        """Feed records an operator asked to retry through intake again: a record that is
        now usable is recorded (the inbox drops it if it was seen) and leaves the table; one
        that is still unusable stays parked with its new reason. Returns (resolved, still)."""
        resolved = still = 0
        async with unit_of_work(self.pool) as uow:
            for row in await uow.parked.due_retries(limit):
                decoded = decode(row.headers, row.value)
                if isinstance(decoded, Park):
                    await uow.parked.still_parked(row.id, decoded.reason)
                    still += 1
                    continue
                if isinstance(decoded, Usable):
                    only = None
                    if row.topic == self.settings.replays_topic:
                        only = targets_in(row.headers)
                    deliveries = plan(
                        self.adapters,
                        decoded.event_id,
                        decoded.event_type,
                        decoded.data,
                        decoded.occurred_at,
                        only,
                    )
                    position = (decoded.event_id, row.topic, row.partition, row.offset)
                    self.recorded += await uow.inbox.record_intake([position], deliveries)
                await uow.parked.resolve(row.id)
                resolved += 1
        if resolved:
            self.wake.set()
        return resolved, still

    async def run_parked_retries(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.retry_parked()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("parked_retry_db_error", error=type(exc).__name__)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

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
                    except REJECTED:  # a record the database refuses (e.g. a NUL in text)
                        await self.handle_one_by_one(records)
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


def _parked(rec: ConsumerRecord[Any, Any], reason: str) -> ParkedRecord:
    return ParkedRecord(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key,
        value=rec.value,
        headers=list(rec.headers or ()),
        reason=reason,
    )
