"""Publishes the propagator's own outbox: dead letters to ``consent.deadletter.v1``, delivery
receipts and audit entries to ``consent.receipts.v1`` (which the consent service projects).

A row is marked published only after the broker acknowledged it; rows are taken with
``FOR UPDATE SKIP LOCKED`` so several propagator replicas share the work. Receipts carry
their delivery's ``updated_at``, and the consent service keeps the newest per delivery, so
the order in which replicas publish does not matter. The statements are
``repositories/outbox.py``'s."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer

from consent_common.kafka import client_kwargs, cloudevent_headers
from consent_common.settings import CommonSettings
from propagator.unit_of_work import unit_of_work

log = structlog.get_logger()
SOURCE = "urn:consent:propagator"
BATCH = 500
IDLE_POLL_S = 0.5  # NOTIFY propagator_outbox wakes it sooner


class OutboxPublisher:
    def __init__(self, settings: CommonSettings, pool: asyncpg.Pool) -> None:
        self.settings, self.pool = settings, pool
        self.wake = asyncio.Event()
        self.published = 0

    def topic_for(self, kind: str) -> str:
        if kind == "deadletter":
            return self.settings.deadletter_topic
        return self.settings.receipts_topic

    async def publish_once(self, producer: Any) -> int:
        """One batch, one unit of work: its rows stay locked until the broker acknowledged
        them and they are marked published."""
        async with unit_of_work(self.pool) as uow:
            rows = await uow.outbox.next_batch(BATCH)
            if not rows:
                return 0
            futures = []
            for r in rows:
                headers = cloudevent_headers(
                    event_id=str(r.id),
                    source=SOURCE,
                    type_=r.type,
                    time=r.occurred_at,
                    subject=r.key,
                    sequence=r.sequence,
                )
                futures.append(
                    await producer.send(
                        self.topic_for(r.kind),
                        key=r.key.encode(),
                        value=r.payload.encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)
            await uow.outbox.mark_published([r.position for r in rows])
        self.published += len(rows)
        return len(rows)

    async def purge(self, older_than_hours: int = 24) -> int:
        async with unit_of_work(self.pool, atomic=False) as uow:
            return await uow.outbox.purge_published(older_than_hours)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            producer = AIOKafkaProducer(
                acks="all",
                enable_idempotence=False,  # ordering and no loss come from the outbox
                linger_ms=2,
                request_timeout_ms=10000,
                **client_kwargs(self.settings),
            )
            try:
                await producer.start()
                loop = asyncio.get_running_loop()
                next_purge = loop.time() + 60
                while not stop.is_set():
                    self.wake.clear()  # before reading: a NOTIFY from now on is not lost
                    if await self.publish_once(producer):
                        continue
                    if loop.time() >= next_purge:
                        next_purge = loop.time() + 3600
                        await self.purge()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), IDLE_POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: try again, never die
                log.warning("propagator_outbox_error", error=type(exc).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 5)
