"""A consumer loop over ``consent.events.v1`` that does what every subscriber must.

For each record, in order per partition:

1. Decode it (:class:`~consent_client.parsing.Parser`). A record that cannot be decoded is
   **parked** (``store.park`` and ``on_park``) and passed over; an event type this version
   does not know is skipped and counted.
2. Drop it if its event id was applied already (a redelivery), or if its sequence is not
   newer than the last one applied for the subject (stale or duplicate).
3. Call your handler. Returned: the store records the id and sequence. Raised
   :class:`Reject`: the record is parked and passed over. Raised anything else: the partition
   goes back to that record and is retried after a backoff (nothing after it is skipped).
4. Commit the consumer group's offsets after the batch, only past records that are done.

Delivery to your handler is therefore at least once, in order per subject, never stale.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consent_client.events import Event, MalformedEvent, SubjectEvent
from consent_client.parsing import Envelope, Parser, header_dict
from consent_client.stores import IdempotencyStore, MemoryStore, ParkedRecord

log = logging.getLogger("consent_client.subscriber")

EVENTS_TOPIC = "consent.events.v1"


class Reject(Exception):
    """Raise from a handler for an event it can never apply: it is parked, not retried."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler receives: the typed event and where it came from."""

    event: Event
    envelope: Envelope
    topic: str
    partition: int
    offset: int
    unknown_fields: tuple[str, ...] = ()


@dataclass
class SubscriberStats:
    handled: int = 0
    duplicates: int = 0
    stale: int = 0
    unknown_types: int = 0
    parked: int = 0
    retries: int = 0


Handler = Callable[[Delivery], Awaitable[None] | None]


class Subscriber:
    """``await Subscriber(bootstrap, group).run(handler)`` until ``stop()`` (or cancel).

    ``consumer_kwargs`` go to ``aiokafka.AIOKafkaConsumer`` (SASL, TLS, ...)."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        *,
        topic: str = EVENTS_TOPIC,
        store: IdempotencyStore | None = None,
        on_park: Callable[[ParkedRecord], Awaitable[None] | None] | None = None,
        consumer_kwargs: Mapping[str, Any] | None = None,
        retry_backoff_s: float = 1.0,
        max_retry_backoff_s: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topic = topic
        self.store: IdempotencyStore = store if store is not None else MemoryStore()
        self.on_park = on_park
        self.consumer_kwargs = dict(consumer_kwargs or {})
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_backoff_s = max_retry_backoff_s
        self.parser = Parser()
        self.stats = SubscriberStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _park(self, record: ParkedRecord) -> None:
        self.stats.parked += 1
        log.warning(
            "parked %s/%s@%s: %s", record.topic, record.partition, record.offset, record.reason
        )
        self.store.park(record)
        if self.on_park is not None:
            result = self.on_park(record)
            if inspect.isawaitable(result):
                await result

    async def _one(self, handler: Handler, r: Any) -> None:
        """Process one record; raises what the handler raised for a retry."""
        try:
            parsed = self.parser.record(r.headers, r.value)
        except MalformedEvent as exc:
            await self._park(_parked(r, str(exc)))
            return
        if parsed.event is None:
            self.stats.unknown_types += 1
            return
        env = parsed.envelope
        if self.store.seen(env.id):
            self.stats.duplicates += 1
            return
        subject: str | None = None
        seq: int | None = None
        if isinstance(parsed.event, SubjectEvent):  # dead letters, policies: by id only
            subject, seq = parsed.event.subject_id, parsed.event.sequence
        if subject is not None and seq is not None and seq <= self.store.last_sequence(subject):
            self.stats.stale += 1
            return
        delivery = Delivery(
            parsed.event, env, r.topic, r.partition, r.offset, parsed.unknown_fields
        )
        try:
            result = handler(delivery)
            if inspect.isawaitable(result):
                await result
        except Reject as exc:
            await self._park(_parked(r, f"rejected by handler: {exc}", env.id))
            self.store.applied(env.id, subject, seq)  # never again: parked is final
            return
        self.store.applied(env.id, subject, seq)
        self.stats.handled += 1

    async def run(self, handler: Handler, *, max_idle_s: float | None = None) -> None:
        """Consume until :meth:`stop`, or until ``max_idle_s`` pass without a record once
        partitions are assigned (tests, batch jobs)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **self.consumer_kwargs,
        )
        await consumer.start()
        idle = 0.0
        backoff = self.retry_backoff_s
        try:
            while not self._stop.is_set() and (max_idle_s is None or idle < max_idle_s):
                t0 = time.monotonic()
                batch = await consumer.getmany(timeout_ms=200)
                if not batch:
                    if consumer.assignment():  # joining the group is not being idle
                        idle += time.monotonic() - t0
                    continue
                idle = 0.0
                commits: dict[TopicPartition, OffsetAndMetadata] = {}
                failed = False
                for tp, records in batch.items():
                    for r in records:
                        try:
                            await self._one(handler, r)
                        except Exception as exc:
                            self.stats.retries += 1
                            log.warning(
                                "handler failed at %s@%s (%s: %s); retrying in %.1fs",
                                tp,
                                r.offset,
                                type(exc).__name__,
                                exc,
                                backoff,
                            )
                            consumer.seek(tp, r.offset)
                            failed = True
                            break
                        commits[tp] = OffsetAndMetadata(r.offset + 1, "")
                if commits:
                    await consumer.commit(commits)
                if failed:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_retry_backoff_s)
                else:
                    backoff = self.retry_backoff_s
        finally:
            await consumer.stop()


def _parked(r: Any, reason: str, event_id: str | None = None) -> ParkedRecord:
    try:
        headers = header_dict(r.headers)
    except MalformedEvent:
        headers = {}
    key = r.key.decode(errors="replace") if isinstance(r.key, bytes) else r.key
    return ParkedRecord(
        reason=reason,
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        key=key,
        headers=headers,
        value=r.value,
        event_id=event_id or headers.get("ce_id"),
    )
